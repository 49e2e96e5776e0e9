from skyfed.cli.main import main

main()
