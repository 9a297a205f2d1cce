// stagewise-fuzz: malformed messages at volume into a live stage (scripts/fuzz.sh runs it).
StageFuzz.main()
