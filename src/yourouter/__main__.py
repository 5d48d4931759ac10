from yourouter.cli import main

main()
