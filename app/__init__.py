"""EdgeOpt web layer: settings, database, routes, jobs and the CLI.

Only this package knows about HTTP and the database; ``devices``, ``predictors`` and
``search`` stay free of it so they can be used and tested on their own.
"""
