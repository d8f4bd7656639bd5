from studyc.cli.commands import main

main()
