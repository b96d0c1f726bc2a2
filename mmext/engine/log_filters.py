"""Log records of mmengine that say nothing a user can act on, dropped from mmext's Runner log.

mmengine 0.10's ``CheckpointHook`` and ``LoggerHook`` build a ``FileClient`` on every run, and
``FileClient`` logs its own deprecation (plus "HardDiskBackend is the alias of LocalBackend") as
WARNINGs at start-up.  They are mmengine's internals, not the user's config, so the Runner's
logger drops exactly those messages; every other record passes.
"""
import logging
import re

__all__ = ['ForeignNoticeFilter']


class ForeignNoticeFilter(logging.Filter):
    """Drop mmengine's FileClient deprecation notices (matched by message)."""

    NOTICES = re.compile(r'^"FileClient" will be deprecated in future|'
                         r'^"HardDiskBackend" is the alias of "LocalBackend"')

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.NOTICES.match(str(record.msg))
