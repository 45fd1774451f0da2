"""Mode `scrapy-redis`: the Scrapy spider of mode `scrapy` on scrapy-redis's Redis queue.

A private redis-server (free port, no persistence) holds the start URLs
(``<spider>:start_urls``, pushed as JSON) and the request queue
(``scrapy_redis.scheduler.Scheduler`` + ``RFPDupeFilter``); a ``RedisSpider``
reads them. scrapy-redis waits for more start URLs forever by default; this
spider closes as soon as it is idle with both lists empty (the equivalent of
the scraper's ``--burst``). CONCURRENT_REQUESTS 256 as in mode `scrapy`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _crawl
import redis
from _procs import PrivateRedis
from scrapy.crawler import CrawlerProcess
from scrapy_redis.spiders import RedisSpider
from scrapy_spider import COUNTS, JsonLinesPipeline


class RedisCommentSpider(RedisSpider):
    name = "comments"

    def __init__(self, base_url: str, output: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url
        self.output = output

    def parse(self, response):  # noqa: ANN001, ANN201
        COUNTS["pages"] += 1
        records, followups = _crawl.parse_records(self.base_url, response.url, response.body)
        yield from records
        for url in followups:
            yield response.follow(url, callback=self.parse, errback=self.failed)

    def failed(self, failure: Any) -> None:
        COUNTS["errors"] += 1
        print(f"scrapy-redis: {failure.request.url}: {failure.value!r}")

    def spider_idle(self) -> None:
        if self.server is not None and self.count_size(self.redis_key) == 0:
            return  # nothing queued anywhere: let Scrapy close the spider
        super().spider_idle()


def main() -> None:
    args = _crawl.arguments(__doc__, concurrency=(int, 256, "CONCURRENT_REQUESTS"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scrapy-redis-") as tmp:
        server = PrivateRedis(Path(tmp)).start()
        try:
            client = redis.Redis.from_url(server.url)
            seeds = [json.dumps({"url": url}) for url in _crawl.seed_urls(args.base_url, args.aids)]
            client.lpush("comments:start_urls", *seeds)
            process = CrawlerProcess(
                settings={
                    "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
                    "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
                    "SCHEDULER_PERSIST": False,
                    "REDIS_URL": server.url,
                    "REDIS_START_URLS_BATCH_SIZE": 256,
                    "CONCURRENT_REQUESTS": args.concurrency,
                    "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
                    "AUTOTHROTTLE_ENABLED": False,
                    "ROBOTSTXT_OBEY": False,
                    "DOWNLOAD_DELAY": 0,
                    "LOG_LEVEL": "WARNING",
                    "TELNETCONSOLE_ENABLED": False,
                    "COOKIES_ENABLED": False,
                    "ITEM_PIPELINES": {JsonLinesPipeline: 100},
                }
            )
            process.crawl(RedisCommentSpider, base_url=args.base_url, output=args.output)
            process.start()
        finally:
            server.stop()
    _crawl.report(COUNTS["pages"], started, errors=COUNTS["errors"], redis_cpu_s=round(server.cpu_s, 3))


if __name__ == "__main__":
    main()
