from autors.cli import main

raise SystemExit(main())
