"""``http://postcap.cert/``: the CA certificate and how to trust it, served by the proxy
itself (never forwarded upstream), like mitmproxy's mitm.it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from postcap.proxy.exchange import format_headers
from postcap.proxy.framing import RequestHead
from postcap.proxy.targets import Target

if TYPE_CHECKING:
    from postcap.proxy.server import ProxyServerProtocol
    from postcap.tls.ca import CertificateAuthority

ONBOARDING_HOST = "postcap.cert"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>postcap CA certificate</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}} pre{{padding:.6rem;overflow:auto}}
a.button{{display:inline-block;margin:.2rem .4rem .2rem 0;padding:.4rem .8rem;border:1px solid #555;border-radius:4px;text-decoration:none;color:#222}}
h2{{margin-top:1.8rem}}
</style></head><body>
<h1>Trust the postcap CA</h1>
<p>postcap intercepts HTTPS by presenting certificates signed by its own certificate authority.
Install and trust this CA only on devices you use for testing. Fingerprint (SHA-256):</p>
<pre>{fingerprint}</pre>
<p><a class="button" href="/cert/pem">postcap-ca.pem</a>
<a class="button" href="/cert/cer">postcap-ca.cer (DER)</a>
<a class="button" href="/cert/p12">postcap-ca.p12</a></p>

<h2>iOS and iPadOS</h2>
<ol><li>Open this page in Safari and download <a href="/cert/pem">postcap-ca.pem</a>; allow the configuration profile.</li>
<li>Settings → General → VPN &amp; Device Management → the postcap profile → Install.</li>
<li>Settings → General → About → Certificate Trust Settings → enable full trust for the postcap CA.</li></ol>

<h2>Android</h2>
<ol><li>Download <a href="/cert/cer">postcap-ca.cer</a>.</li>
<li>Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate, and pick the file.</li>
<li>Apps targeting Android 7+ trust user CAs only when their network security config says so
(<code>&lt;certificates src="user"/&gt;</code> in debug builds).</li></ol>

<h2>macOS</h2>
<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain postcap-ca.pem</pre>
<p>or open the file in Keychain Access, then set "When using this certificate" to Always Trust.</p>

<h2>Windows</h2>
<pre>certutil -addstore root postcap-ca.cer</pre>
<p>(from an administrator prompt), or double-click the .cer file → Install Certificate → Local Machine →
Trusted Root Certification Authorities.</p>

<h2>Linux</h2>
<pre>sudo cp postcap-ca.pem /usr/local/share/ca-certificates/postcap-ca.crt
sudo update-ca-certificates</pre>
<p>For one program only: <code>curl --cacert postcap-ca.pem …</code>,
<code>SSL_CERT_FILE=postcap-ca.pem python …</code> (Python's ssl and OpenSSL),
<code>REQUESTS_CA_BUNDLE=postcap-ca.pem</code> (requests), <code>NODE_EXTRA_CA_CERTS=postcap-ca.pem</code> (Node.js).</p>
<p>Chromium and Chrome on Linux use the NSS database:</p>
<pre>certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n postcap -i postcap-ca.pem</pre>

<h2>Firefox</h2>
<p>Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities → Import,
pick postcap-ca.pem and tick "Trust this CA to identify websites".</p>
</body></html>
"""


def _response(status: int, reason: bytes, content_type: bytes, body: bytes, extra: list | None = None) -> bytes:
    headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", b"%d" % len(body)),
        (b"Cache-Control", b"no-store"),
        (b"Connection", b"close"),
    ] + (extra or [])
    return b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (status, reason, format_headers(headers), body)


def onboarding_response(ca: "CertificateAuthority | None", method: bytes, path: bytes) -> bytes:
    """The whole HTTP response for ``path`` on the certificate page."""
    if ca is None:
        return _response(404, b"Not Found", b"text/plain; charset=utf-8",
                         b"postcap: HTTPS interception is off, so there is no CA to install\n")
    route = path.split(b"?", 1)[0]
    if route == b"/":
        body = _PAGE.format(fingerprint=html.escape(ca.sha256)).encode("utf-8")
        response = _response(200, b"OK", b"text/html; charset=utf-8", body)
    elif route in (b"/cert/pem", b"/postcap-ca.pem"):
        response = _response(200, b"OK", b"application/x-x509-ca-cert", ca.pem,
                             [(b"Content-Disposition", b'attachment; filename="postcap-ca.pem"')])
    elif route in (b"/cert/cer", b"/postcap-ca.cer"):
        response = _response(200, b"OK", b"application/x-x509-ca-cert", ca.der,
                             [(b"Content-Disposition", b'attachment; filename="postcap-ca.cer"')])
    elif route in (b"/cert/p12", b"/postcap-ca.p12"):
        response = _response(200, b"OK", b"application/x-pkcs12", ca.pkcs12(),
                             [(b"Content-Disposition", b'attachment; filename="postcap-ca.p12"')])
    else:
        response = _response(404, b"Not Found", b"text/plain; charset=utf-8",
                             b"postcap: no such page; the certificate page is http://postcap.cert/\n")
    if method == b"HEAD":
        head, _, _ = response.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"
    return response


def serve_onboarding(protocol: "ProxyServerProtocol", head: RequestHead, target: Target) -> None:
    """Answer a request for postcap.cert locally, then close the connection."""
    minter = protocol.factory.minter
    ca = None if minter is None else minter.ca
    answer = onboarding_response(ca, head.method, target.path)
    protocol.factory.tally.request_answered(int(answer[9:12]), protocol.http_version)
    protocol.transport.write(answer)
    protocol.close()
