#!/usr/bin/env python3
"""`ping` answers its input: the SDK round-trip bench's workload
(`cargo bench -p devctl-sdk --bench roundtrip`), written with devctl_plugin."""
from devctl_plugin import Plugin

plugin = Plugin("ping")


@plugin.op("ping")
def ping(ctx, input):
    return input


if __name__ == "__main__":
    plugin.run()
