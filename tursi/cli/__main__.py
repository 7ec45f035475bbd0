from tursi.cli import main

main()
