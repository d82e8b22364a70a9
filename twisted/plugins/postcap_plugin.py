"""The ``twistd postcap`` plugin: imports nothing of postcap until it is used."""

from twisted.application.service import ServiceMaker

postcap = ServiceMaker(
    "postcap",
    "postcap.tap",
    "A capture proxy: record HTTP(S) traffic into a searchable history.",
    "postcap",
)
