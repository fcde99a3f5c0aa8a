from cellpipe.cli import main

main()
