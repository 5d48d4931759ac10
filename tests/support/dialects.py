"""One small adapter per official SDK, so the 3x3 translation matrix can drive every client dialect the same way."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import openai
from google import genai
from google.genai import types as gtypes

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                  "required": ["city"]}
PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()
TOOL_RESULT = "sunny and 21 degrees"


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish: str | None = None


@dataclass
class ToolTrip:
    name: str
    arguments: dict[str, Any]
    final_text: str


class DialectClient(Protocol):
    name: str

    def text(self, model: str, prompt: str, system: str | None = None) -> Answer: ...

    def stream_text(self, model: str, prompt: str) -> Answer: ...

    def image(self, model: str, prompt: str) -> str: ...

    def tool_trip(self, model: str, stream: bool) -> ToolTrip: ...


class OpenAIClient:
    name = "openai"

    def __init__(self, base_url: str, key: str) -> None:
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20)

    def text(self, model: str, prompt: str, system: str | None = None) -> Answer:
        messages: list[Any] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        reply = self.client.chat.completions.create(model=model, messages=messages, max_tokens=200)
        usage = reply.usage
        assert usage is not None
        return Answer(reply.choices[0].message.content or "", usage.prompt_tokens, usage.completion_tokens,
                      reply.choices[0].finish_reason)

    def stream_text(self, model: str, prompt: str) -> Answer:
        text, usage = "", None
        for chunk in self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                         stream=True, stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert usage is not None, "no usage chunk"
        return Answer(text, usage.prompt_tokens, usage.completion_tokens)

    def image(self, model: str, prompt: str) -> str:
        content = [{"type": "text", "text": prompt},
                   {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}}]
        reply = self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
        return reply.choices[0].message.content or ""

    def tool_trip(self, model: str, stream: bool) -> ToolTrip:
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                   "parameters": WEATHER_SCHEMA}}]
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        if stream:
            call_id, name, arguments, finish = "", "", "", None
            for chunk in self.client.chat.completions.create(model=model, messages=messages, tools=tools,
                                                             stream=True):
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or []:
                        call_id = call.id or call_id
                        name += call.function.name or "" if call.function else ""
                        arguments += call.function.arguments or "" if call.function else ""
                    finish = choice.finish_reason or finish
            assert finish == "tool_calls", finish
        else:
            reply = self.client.chat.completions.create(model=model, messages=messages, tools=tools)
            assert reply.choices[0].finish_reason == "tool_calls"
            call = reply.choices[0].message.tool_calls[0]
            call_id, name, arguments = call.id, call.function.name, call.function.arguments
        messages += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}]
        final = self.client.chat.completions.create(model=model, messages=messages, tools=tools)
        return ToolTrip(name, json.loads(arguments), final.choices[0].message.content or "")


class AnthropicClient:
    name = "anthropic"

    def __init__(self, base_url: str, key: str) -> None:
        self.client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)

    def text(self, model: str, prompt: str, system: str | None = None) -> Answer:
        options: dict[str, Any] = {"system": system} if system else {}
        reply = self.client.messages.create(model=model, max_tokens=200,
                                            messages=[{"role": "user", "content": prompt}], **options)
        text = "".join(b.text for b in reply.content if b.type == "text")
        return Answer(text, reply.usage.input_tokens, reply.usage.output_tokens, reply.stop_reason)

    def stream_text(self, model: str, prompt: str) -> Answer:
        with self.client.messages.stream(model=model, max_tokens=200,
                                         messages=[{"role": "user", "content": prompt}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        return Answer(text, final.usage.input_tokens, final.usage.output_tokens, final.stop_reason)

    def image(self, model: str, prompt: str) -> str:
        content = [{"type": "text", "text": prompt},
                   {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1PX}}]
        reply = self.client.messages.create(model=model, max_tokens=200,
                                            messages=[{"role": "user", "content": content}])
        return "".join(b.text for b in reply.content if b.type == "text")

    def tool_trip(self, model: str, stream: bool) -> ToolTrip:
        tools = [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA}]
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        if stream:
            with self.client.messages.stream(model=model, max_tokens=200, tools=tools, messages=messages) as s:
                first = s.get_final_message()
        else:
            first = self.client.messages.create(model=model, max_tokens=200, tools=tools, messages=messages)
        assert first.stop_reason == "tool_use", first.stop_reason
        use = next(b for b in first.content if b.type == "tool_use")
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": TOOL_RESULT}]}]
        final = self.client.messages.create(model=model, max_tokens=200, tools=tools, messages=messages)
        return ToolTrip(use.name, dict(use.input), "".join(b.text for b in final.content if b.type == "text"))


class StaticToken:
    """google-auth credentials that carry the gateway key as a bearer token and never refresh."""

    @staticmethod
    def make(token: str) -> Any:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token, expiry=dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1))


class GeminiClient:
    def __init__(self, base_url: str, key: str, vertex: bool = False) -> None:
        self.name = "gemini-vertex" if vertex else "gemini"
        if vertex:
            self.client = genai.Client(vertexai=True, project="proj", location="us-central1",
                                       credentials=StaticToken.make(key),
                                       http_options=gtypes.HttpOptions(base_url=base_url + "/", api_version="v1"))
        else:
            self.client = genai.Client(api_key=key, http_options=gtypes.HttpOptions(base_url=base_url))

    def text(self, model: str, prompt: str, system: str | None = None) -> Answer:
        config = gtypes.GenerateContentConfig(system_instruction=system, max_output_tokens=200)
        reply = self.client.models.generate_content(model=model, contents=prompt, config=config)
        usage = reply.usage_metadata
        assert usage is not None
        finish = reply.candidates[0].finish_reason if reply.candidates else None
        return Answer(reply.text or "", usage.prompt_token_count or 0, usage.candidates_token_count or 0,
                      str(finish.value if finish else None))

    def stream_text(self, model: str, prompt: str) -> Answer:
        text, usage = "", None
        for chunk in self.client.models.generate_content_stream(model=model, contents=prompt):
            text += chunk.text or ""
            usage = chunk.usage_metadata or usage
        assert usage is not None
        return Answer(text, usage.prompt_token_count or 0, usage.candidates_token_count or 0)

    def image(self, model: str, prompt: str) -> str:
        part = gtypes.Part.from_bytes(data=base64.b64decode(PNG_1PX), mime_type="image/png")
        reply = self.client.models.generate_content(model=model, contents=[prompt, part])
        return reply.text or ""

    def tool_trip(self, model: str, stream: bool) -> ToolTrip:
        function = gtypes.FunctionDeclaration(name="get_weather", description="Weather for a city",
                                              parameters_json_schema=WEATHER_SCHEMA)
        config = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=[function])],
                                              automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(
                                                  disable=True))
        contents: list[Any] = [gtypes.Content(role="user", parts=[gtypes.Part(text="What is the weather in Paris?")])]
        if stream:
            calls, model_parts = [], []
            for chunk in self.client.models.generate_content_stream(model=model, contents=contents, config=config):
                if chunk.function_calls:
                    calls.extend(chunk.function_calls)
                if chunk.candidates and chunk.candidates[0].content and chunk.candidates[0].content.parts:
                    model_parts.extend(chunk.candidates[0].content.parts)
            model_turn = gtypes.Content(role="model", parts=model_parts)
        else:
            reply = self.client.models.generate_content(model=model, contents=contents, config=config)
            calls = list(reply.function_calls or [])
            model_turn = reply.candidates[0].content
        assert calls, "no function call"
        call = calls[0]
        response_part = gtypes.Part.from_function_response(name=call.name, response={"output": TOOL_RESULT})
        if call.id:
            response_part.function_response.id = call.id
        contents += [model_turn, gtypes.Content(role="user", parts=[response_part])]
        final = self.client.models.generate_content(model=model, contents=contents, config=config)
        return ToolTrip(call.name or "", dict(call.args or {}), final.text or "")


def make_client(dialect: str, base_url: str, key: str) -> DialectClient:
    if dialect == "openai":
        return OpenAIClient(base_url, key)
    if dialect == "anthropic":
        return AnthropicClient(base_url, key)
    return GeminiClient(base_url, key, vertex=dialect == "gemini-vertex")
