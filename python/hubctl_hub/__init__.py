"""hubctl's side of the hub: what jupyterhub_config.py configures, installed by hubctl beside it.

hubctl writes this package into the directory the rendered config puts first on sys.path (a
directory of root's, checked like the config: src/lib/setup/trust.ts), each time it writes the
config; the config imports these modules and gives them its values. Modules: homes (the homes of
servers run as the hub's user), ports (the ports handed to user servers), owners (who listens on
a port, through /proc), records (servers.json for hubctl's supervisor), readiness (a server is up
when its own process answers), spawnqueue (servers start a few at a time, the others in line),
prespawn (the pre-spawn hook joining them), pam (PAM's thread pool before JupyterHub 5.2).
"""
