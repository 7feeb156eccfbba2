"""ZKTeco terminals over the ADMS ("iclock") push protocol: pure parsing and formatting."""
from .adms import (
    AdmsError,
    AttlogRecord,
    DeviceCmdResult,
    delete_user_command,
    format_commands,
    handshake_response,
    local_to_utc,
    parse_attlog,
    parse_devicecmd,
    parse_query,
    serial_number,
    user_info_command,
)

__all__ = [
    "AdmsError", "AttlogRecord", "DeviceCmdResult", "delete_user_command", "format_commands",
    "handshake_response", "local_to_utc", "parse_attlog", "parse_devicecmd", "parse_query",
    "serial_number", "user_info_command",
]
