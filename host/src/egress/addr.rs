//! Which addresses the egress proxy may ever connect to: public unicast only. Checked on the
//! address actually dialled (after resolution), so names that resolve inward (DNS rebinding,
//! `localhost`, `2130706433`, `0x7f.1`) and IP literals in any spelling are caught the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` when it is public unicast.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        return Some("a cloud metadata address");
    }
    let reason = match o {
        [0, ..] => "an unspecified (0.0.0.0/8) address",
        [127, ..] => "a loopback address",
        [10, ..] => "a private (RFC 1918) address",
        [172, b, ..] if (16..=31).contains(&b) => "a private (RFC 1918) address",
        [192, 168, ..] => "a private (RFC 1918) address",
        [169, 254, ..] => "a link-local address",
        [100, b, ..] if (64..=127).contains(&b) => "a carrier-grade NAT (100.64.0.0/10) address",
        [192, 0, 0, _] => "an IETF protocol (192.0.0.0/24) address",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [198, b, ..] if b == 18 || b == 19 => "a benchmarking (198.18.0.0/15) address",
        [a, ..] if (224..=239).contains(&a) => "a multicast address",
        [a, ..] if a >= 240 => "a reserved or broadcast address",
        _ => return None,
    };
    Some(reason)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("a cloud metadata address");
    }
    let s = ip.segments();
    // Forms that carry an IPv4 address: judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refusal_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
        return refusal_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4 (2002::/16) embeds the IPv4 address in bits 16..48.
        return refusal_v4(embedded_v4(s[1], s[2]));
    }
    let reason = match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "an unspecified address",
        [0, 0, 0, 0, 0, 0, 0, 1] => "a loopback address",
        // Deprecated IPv4-compatible (::a.b.c.d) and other ::/96 forms.
        [0, 0, 0, 0, 0, 0, _, _] => "an IPv4-compatible address",
        [a, ..] if a & 0xfe00 == 0xfc00 => "a unique local (fc00::/7) address",
        [a, ..] if a & 0xffc0 == 0xfe80 => "a link-local address",
        [a, ..] if a & 0xffc0 == 0xfec0 => "a site-local address",
        [a, ..] if a & 0xff00 == 0xff00 => "a multicast address",
        [0x2001, 0, ..] => "a Teredo (2001::/32) address",
        [0x2001, 0xdb8, ..] => "a documentation address",
        [0x100, 0, 0, 0, ..] => "a discard-only (100::/64) address",
        _ => return None,
    };
    Some(reason)
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        refusal(s.parse().expect("test setup")).is_some()
    }

    #[test]
    fn inward_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(refused(a), "{a} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(a), "{a} must pass");
        }
    }
}
