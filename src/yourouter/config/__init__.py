"""Configuration: the settings schema and how a file or the environment becomes `Settings`."""

from yourouter.config.loader import SETTINGS_ENV, ConfigError, load_settings, settings_from_env, settings_from_mapping
from yourouter.config.schema import ProviderConfig, Settings, StaticKey

__all__ = ["SETTINGS_ENV", "ConfigError", "ProviderConfig", "Settings", "StaticKey", "load_settings",
           "settings_from_env", "settings_from_mapping"]
