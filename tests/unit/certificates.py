"""A CA certificate for tests of TLS settings; no private key goes with it."""

from __future__ import annotations

from pathlib import Path

# Self-signed, subject "CN=mentorflow test CA", valid until 2126. Loading it as a
# trust anchor needs no key, so none was kept.
TEST_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUTqP/nEY7da3qiLpP++8hvC2YU4kwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSbWVudG9yZmxvdyB0ZXN0IENBMCAXDTI2MTIwNDA0MDc1MVoY
DzIxMjYxMTEwMDQwNzUxWjAdMRswGQYDVQQDDBJtZW50b3JmbG93IHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARU69QcqhhPP/I4pJs0HDihfAZRfRJm
+ZsrUzXFOZvVOpGMJrz6+oBkPtbmWUuSV/yxKmRrl7LPLEoQPKIeO4VEo1MwUTAd
BgNVHQ4EFgQUyS+Ikj2Iyi8pL1mcOVAoUff4+vAwHwYDVR0jBBgwFoAUyS+Ikj2I
yi8pL1mcOVAoUff4+vAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiEA0/XH2DyDqJSuSq/G/liV9Mpv8ZC3gti5JoUR+MZYTjICIC+5Hx/S9F7dPRsM
UPbWmz7jYPuzAhYozGydKJnMX3SU
-----END CERTIFICATE-----
"""
TEST_CA_SUBJECT = "mentorflow test CA"


def write_test_ca(directory: Path) -> Path:
    """Write the test CA certificate into directory; return its path."""
    path = directory / "ca.pem"
    path.write_text(TEST_CA_PEM)
    return path
