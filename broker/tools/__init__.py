"""Tools beside the streaming service: replay a night or a dataset into Kafka, the demo, the
Kafka-protocol test broker and its launcher, and the local loop (send files, read topics).

The service (`broker.app` and the modules it wires) never imports them; `broker.cli` registers
their ``dmdt-broker`` subcommands.
"""
