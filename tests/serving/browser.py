"""The pages' tests drive a real headless Chromium (Debian's package: ``make browser``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from serving.sessions import COOKIE


class Visit:
    """A fresh browser context on the server: its page, and the requests it tried to send elsewhere."""

    def __init__(self, browser, server):
        self.base = f"http://127.0.0.1:{server.port}"
        self.context = browser.new_context()
        self.elsewhere: list[str] = []
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()

    def _only_local(self, route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def open(self, path: str):
        return self.page.goto(self.base + path)

    def sign_in(self, key: str):
        self.open("/ui/login")
        self.page.fill("#api_key", key)
        with self.page.expect_navigation():
            self.page.click("button:has-text('Sign in')")
        return self.page

    def cookie(self) -> str | None:
        return next((c["value"] for c in self.context.cookies() if c["name"] == COOKIE), None)

    def take_next(self):
        self.open("/ui/queue")
        with self.page.expect_navigation():
            self.page.click("button:has-text('Take next')")
        assert "/ui/claims/" in self.page.url, self.page.content()[:2000]
        return self.page
