"""TLS for the client: the SSL context the options ask for, and handshake failures in words.

Certificates are checked by default, against the system's trusted CAs plus the ``--ca``
file if one is given; ``--insecure`` turns checking off. The same context serves
``--tls`` (``tls://``) and ``wss://``.
"""

from __future__ import annotations

import re
import ssl

#: Verification failures that mean "nobody you trust signed this": a private CA or a
#: self-signed certificate, which ``--ca`` fixes. (OpenSSL's X509_V_ERR_* codes.)
_UNTRUSTED_CODES = frozenset(
    {
        2,  # unable to get issuer certificate
        18,  # self-signed certificate
        19,  # self-signed certificate in certificate chain
        20,  # unable to get local issuer certificate
        21,  # unable to verify the first certificate
    }
)
CA_HINT = " (use --ca FILE for a private CA)"
NOT_TLS_HINT = " (is it a TLS port?)"
#: SSL errors that mean the other end does not speak TLS at all.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_EOF_WHILE_READING"}
)


class TlsSetupError(ValueError):
    """The TLS options cannot be used (e.g. an unreadable CA file); one line for the user."""


def client_ssl_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """The context for every TLS connection the client makes.

    ``ca_file`` (PEM) is trusted on top of the system's CAs; ``insecure`` checks nothing.
    Raises :class:`TlsSetupError` if ``ca_file`` cannot be read or holds no certificate.
    """
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(ca_file)
        except ssl.SSLError as exc:  # before OSError, its base class
            raise TlsSetupError(f"cannot load CA file {ca_file!r}: {ssl_reason(exc)}") from None
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise TlsSetupError(f"cannot read CA file {ca_file!r}: {reason}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_tls_error(exc: BaseException | None) -> str:
    """A few words for why a TLS handshake failed; ``exc`` is the ``__cause__`` of trio's
    ``BrokenResourceError`` (``None`` when the server just closed the connection)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = (exc.verify_message or ssl_reason(exc)).rstrip(".")
        # OpenSSL's messages are lower case, except Python's own "Hostname mismatch, ...".
        message = message[:1].lower() + message[1:]
        hint = CA_HINT if exc.verify_code in _UNTRUSTED_CODES else ""
        return f"certificate verify failed: {message}{hint}"
    if isinstance(exc, ssl.SSLError) and exc.reason not in _NOT_TLS_REASONS:
        return f"TLS handshake failed: {ssl_reason(exc)}"
    return f"TLS handshake failed{NOT_TLS_HINT}"


def ssl_reason(exc: ssl.SSLError) -> str:
    """``exc``'s message without OpenSSL's ``[LIB: REASON]`` prefix and ``(_ssl.c:N)``."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or exc.reason or "SSL error"
