from pyspeaker.cli import main

main()
