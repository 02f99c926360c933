"""Which webhook addresses a channel may use (the server makes the request)."""

import pytest

from apps.notifications.urlcheck import UrlRefused, UrlUnresolved, check_webhook_url


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"],
)
def test_cloud_metadata_addresses_are_never_allowed(settings, url):
    """Even with private addresses allowed, metadata addresses (also IPv4-mapped) are refused."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    with pytest.raises(UrlRefused, match="metadata"):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://localhost:8080/x", "http://192.168.1.5/", "http://[::1]/"]
)
def test_local_and_private_addresses_need_the_setting(settings, url):
    """Loopback (also by name) and private networks: refused when off, allowed when on."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(UrlRefused, match="not a public address"):
        check_webhook_url(url)
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    assert check_webhook_url(url)


def test_a_public_address_is_allowed(settings):
    """A public literal address passes with private addresses refused."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    assert [str(a) for a in check_webhook_url("https://8.8.8.8/hook")] == ["8.8.8.8"]


def test_an_unresolvable_host_passes_on_save_but_not_on_send(settings):
    """Saving accepts a host only the workers may resolve; sending needs it to resolve (and retries otherwise)."""
    assert check_webhook_url("https://no-such-host.invalid/hook") == []
    with pytest.raises(UrlUnresolved):
        check_webhook_url("https://no-such-host.invalid/hook", must_resolve=True)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "http:///nohost", "https://user:pw@hooks.example.com/x", "http://[::1/x", "http://h:99999/"],
)
def test_unusable_urls_are_refused(url):
    """Other schemes, no host, credentials in the address, malformed addresses."""
    with pytest.raises(UrlRefused):
        check_webhook_url(url)
