"""R30x serial fingerprint modules: packet codec, driver, pty emulator."""
from .r30x import PacketReader, R30xModule, R30xSource, TemplateJob, encode_packet

__all__ = ["PacketReader", "R30xModule", "R30xSource", "TemplateJob", "encode_packet"]
