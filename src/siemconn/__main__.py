from siemconn.cli import main

raise SystemExit(main())
