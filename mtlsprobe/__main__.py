from mtlsprobe.cli import main

main()
