"""Streaming video I/O on PyAV: decode to RGB frames, encode BT.709, copy audio unchanged."""

from .info import Frame, PassthroughPacket, StreamInfo, VideoInfo, VideoWarning
from .reader import VideoReader
from .transcode import transcode
from .writer import VideoWriter

__all__ = ["Frame", "PassthroughPacket", "StreamInfo", "VideoInfo", "VideoReader",
           "VideoWarning", "VideoWriter", "transcode"]
