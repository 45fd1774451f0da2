"""Mode `scrapy`: a Scrapy spider run by CrawlerProcess (this script is its subprocess).

The spider yields page 1 of every video from ``start()``; its callback yields
one item per comment and a Request per follow-up page; an item pipeline
writes each item as an orjson line. Settings: CONCURRENT_REQUESTS(_PER_DOMAIN)
256, AutoThrottle off, no robots.txt, no download delay, no retries needed,
LOG_LEVEL WARNING, telnet console off.
"""

from __future__ import annotations

import time
from typing import Any

import _crawl
import orjson
import scrapy
from scrapy.crawler import CrawlerProcess

COUNTS = {"pages": 0, "errors": 0}


class JsonLinesPipeline:
    def open_spider(self, spider: scrapy.Spider) -> None:
        self.out = open(spider.output, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close_spider

    def close_spider(self, spider: scrapy.Spider) -> None:
        self.out.close()

    def process_item(self, item: dict[str, Any], spider: scrapy.Spider) -> dict[str, Any]:
        self.out.write(orjson.dumps(item) + b"\n")
        return item


class CommentSpider(scrapy.Spider):
    name = "comments"

    def __init__(self, base_url: str, aids: str, output: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url
        self.aids = aids
        self.output = output

    async def start(self):  # noqa: ANN201 - Scrapy >= 2.13 entry point
        for url in _crawl.seed_urls(self.base_url, self.aids):
            yield scrapy.Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

    def start_requests(self):  # noqa: ANN201 - Scrapy < 2.13
        for url in _crawl.seed_urls(self.base_url, self.aids):
            yield scrapy.Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

    def parse(self, response: scrapy.http.Response):  # noqa: ANN201
        COUNTS["pages"] += 1
        records, followups = _crawl.parse_records(self.base_url, response.url, response.body)
        yield from records
        for url in followups:
            yield scrapy.Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

    def failed(self, failure: Any) -> None:
        COUNTS["errors"] += 1
        print(f"scrapy: {failure.request.url}: {failure.value!r}")


def main() -> None:
    args = _crawl.arguments(__doc__, concurrency=(int, 256, "CONCURRENT_REQUESTS"))
    started = time.perf_counter()
    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "AUTOTHROTTLE_ENABLED": False,
            "ROBOTSTXT_OBEY": False,
            "DOWNLOAD_DELAY": 0,
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "COOKIES_ENABLED": False,
            "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
            "ITEM_PIPELINES": {JsonLinesPipeline: 100},
        }
    )
    process.crawl(CommentSpider, base_url=args.base_url, aids=args.aids, output=args.output)
    process.start()
    _crawl.report(COUNTS["pages"], started, errors=COUNTS["errors"])


if __name__ == "__main__":
    main()
