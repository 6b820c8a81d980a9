from inspectd.cli import main

main()
