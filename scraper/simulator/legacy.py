"""What the legacy page-numbered endpoint reaches: the expectations of a legacy crawl.

Functions behind the ``Corpus`` methods of the same names. ``expected_rpids``,
``expected_pages`` and ``page_urls`` describe a crawl of ``/x/v2/reply`` pages (logged in, or the "legacy-open"
profile) up to the corpus's ``max_page`` cap, with every thread's pages
fanned out from the list page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scraper.simulator.model import SimVideo, ceil_div

if TYPE_CHECKING:
    from scraper.simulator.corpus import Corpus, RootRef


def reachable_roots(corpus: Corpus, video: SimVideo) -> int:
    """Listed roots a legacy crawl can see: those on pages up to ``max_page``."""
    if video.state != "ok":
        return 0
    if corpus.max_page:
        return min(corpus.list_len(video), corpus.max_page * corpus.page_size)
    return corpus.list_len(video)


def main_pages(corpus: Corpus, video: SimVideo) -> int:
    """Legacy pages a complete crawl requests for this video.

    Always page 1; then up to ceil(count / page_size), but past the cap only
    page ``max_page + 1`` (which answers -400 and tells the crawler to stop).
    """
    if video.state != "ok":
        return 1
    pages = max(1, ceil_div(corpus.list_len(video), corpus.page_size))
    if corpus.max_page:
        pages = min(pages, corpus.max_page + 1)
    return pages


def reply_threads(corpus: Corpus, video: SimVideo) -> list[tuple[RootRef, int]]:
    """(root, reply pages) of every thread a legacy crawl reaches whose preview is incomplete.

    Every page of each (a legacy crawl fans a thread's pages out from the
    list page), a deleted root's included: they all answer 12022.
    """
    return corpus.threads(video, reachable=corpus.reachable_roots(video), fan_out=True)


def expected_rpids(corpus: Corpus) -> set[int]:
    """What a complete legacy crawl returns (all of ``all_rpids`` when there is no cap)."""
    rpids: set[int] = set()
    for video in corpus.videos:
        everything = corpus.video_rpids(video)
        reachable = corpus.reachable_roots(video)
        if reachable == corpus.list_len(video):
            rpids.update(everything)
            continue
        for position in range(reachable, corpus.list_len(video)):
            ref = corpus.root(video, corpus.list_rpid(video, position))
            assert ref is not None
            everything.discard(ref.rpid)
            everything.difference_update(corpus.thread_rpids(video, ref))
        rpids.update(everything)
    return rpids


def expected_comment_count(corpus: Corpus) -> int:
    return len(corpus.expected_rpids())


def expected_pages(corpus: Corpus) -> int:
    return sum(
        corpus.main_pages(video) + sum(pages for _, pages in corpus.reply_threads(video)) for video in corpus.videos
    )


def page_urls(corpus: Corpus, base_url: str) -> list[str]:
    """Every legacy page and reply page a complete legacy crawl requests."""
    base = base_url.rstrip("/")
    ps = corpus.page_size
    urls: list[str] = []
    for video in corpus.videos:
        aid = video.aid
        urls.extend(
            f"{base}/x/v2/reply?type=1&oid={aid}&pn={pn}&ps={ps}&sort=0"
            for pn in range(1, corpus.main_pages(video) + 1)
        )
        for ref, pages in corpus.reply_threads(video):
            urls.extend(
                f"{base}/x/v2/reply/reply?type=1&oid={aid}&root={ref.rpid}&pn={pn}&ps={ps}"
                for pn in range(1, pages + 1)
            )
    return urls
