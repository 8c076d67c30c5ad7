"""feedops: operations toolkit for a China-futures market-data feed over the CTP API."""

__version__ = "0.1.0"
