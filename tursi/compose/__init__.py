"""`tursi compose`: a Compose file's ``models:`` as a project of deployments, and converging tursid to it.

``source`` finds and reads the file (YAML as Compose reads it), ``interpolation`` substitutes ``${VAR}``,
``project`` maps each model entry to a deployment spec (Compose's own keys plus Tursi's under ``x-tursi``) and
``converge`` decides what ``up`` and ``down`` change. The CLI (``tursi.cli.compose``) only talks to tursid.
"""
