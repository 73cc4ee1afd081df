"""PAM logins in a larger thread pool, for a JupyterHub (before 5.2) with no setting for it."""

from concurrent.futures import ThreadPoolExecutor


def threaded_pam_authenticator(threads):
    """PAMAuthenticator with `threads` threads for PAM (JupyterHub before 5.2 has one)."""
    from jupyterhub.auth import PAMAuthenticator
    from traitlets import default

    class HubctlPAMAuthenticator(PAMAuthenticator):
        @default("executor")
        def _hubctl_executor(self):
            return ThreadPoolExecutor(threads)

    return HubctlPAMAuthenticator
