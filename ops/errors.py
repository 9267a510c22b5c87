"""Failures explained in words: what the CLI prints instead of a traceback."""

from __future__ import annotations

# Errors AWS returns when the request's credentials are expired or not valid (STS, signature V4 services).
CREDENTIAL_ERRORS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "RequestExpired",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
SIGN_IN = "sign in again (`aws sso login --profile NAME` and `export AWS_PROFILE=NAME`, or fresh temporary keys)"


class OpsError(Exception):
    """A failure the user can act on; the message says what is wrong and what to do."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(Exception):
    """Ctrl-C during a wait: what kept running in AWS and the command that resumes following it."""

    def __init__(self, what: str, resume: str):
        super().__init__(what)
        self.what = what
        self.resume = resume


def explain(exc: BaseException) -> str | None:
    """A sentence for an AWS SDK failure (credentials, permissions, service errors), or None for anything else."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError):
        return f"no AWS credentials found: {SIGN_IN} for the environment's account"
    if isinstance(exc, (bx.TokenRetrievalError, bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError)):
        return f"your AWS SSO session has expired or is missing ({exc}): {SIGN_IN}"
    if isinstance(exc, (bx.CredentialRetrievalError, bx.PartialCredentialsError)):
        return f"your AWS credentials could not be loaded ({exc}): {SIGN_IN}"
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code in CREDENTIAL_ERRORS:
            return f"AWS refused your credentials ({code}: {message}): they have expired or are not valid; {SIGN_IN}"
        if code in ACCESS_DENIED:
            return f"access denied for {exc.operation_name}: {message} (ask for that permission in this account)"
        return f"{exc.operation_name} failed: {code}: {message}"
    if isinstance(exc, bx.EndpointConnectionError):
        return f"cannot reach AWS: {exc} (check the network, or AWS_ENDPOINT_URL if you set it)"
    if isinstance(exc, bx.BotoCoreError):
        return str(exc)
    return None
