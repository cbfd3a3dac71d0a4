from metachat.cli.main import main

main()
