from mtlsprobe.cli.main import main

main()
