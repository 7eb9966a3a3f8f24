"""MS-LSTM Pipeline: the core library. Each step is a plain function; the CLI, DVC and KFP are thin doors."""

__version__ = "0.1.0"
