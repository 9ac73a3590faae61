//! Command-line pre-shared keys for sealed UDP (`--psk ID:KEY`, KEY 64 hex digits).

use rpc_transport_udp::{key_from_hex, PreSharedKey};

/// Parses `ID:KEY`: the key's id (sent in clear in the handshake) and the 32-byte key as
/// 64 hexadecimal digits.
pub fn parse_psk(text: &str) -> Result<PreSharedKey, String> {
    let (id, key) = text
        .split_once(':')
        .ok_or_else(|| "expected ID:KEY (KEY: 64 hexadecimal digits)".to_owned())?;
    let key = key_from_hex(key).map_err(|e| e.to_string())?;
    PreSharedKey::new(id, key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_and_key_and_names_what_is_wrong() {
        let psk = parse_psk(&format!("billing:{}", "ab".repeat(32))).expect("valid");
        assert_eq!(psk.id(), "billing");
        assert!(parse_psk("billing").unwrap_err().contains("ID:KEY"));
        assert!(parse_psk("billing:abc")
            .unwrap_err()
            .contains("64 hexadecimal"));
        assert!(parse_psk(&format!(":{}", "ab".repeat(32))).is_err());
    }
}
