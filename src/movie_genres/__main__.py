import sys

from movie_genres.cli import main

sys.exit(main())
