//! IDL that the checker accepts must generate Rust that compiles without warnings.
//! Found by fuzzing the compiler: identifiers made of an underscore and digits (`_1`)
//! became the invalid Rust identifier `1` (a panic in the generator) in every position
//! that changes case, and a doc comment holding a bare carriage return became a doc
//! comment rustc rejects. Both are compiled here, with warnings denied.

#[deny(warnings)]
mod digits {
    rpc_macros::idl!(
        "digits",
        "
        const _2 = 2;
        /// A typedef.
        typedef int _3;
        enum _4 { _1 = 1, _5 = _2, __6 = 3 };
        struct _7 { int _8; _3 _9; _4 _10; _7 *_11; };
        union _12 switch (_4 _13) {
          case _1: int _14;
          case _2: void;
          default: _7 *_15;
        };
        union _16 switch (int _17) { case 0: void; case _2: void; case -1: void; };
        interface _18 version 1 { _12 _19(int _20, _16 _21); void __22(); };
        program _23 { version _24 { int _25(int) = 1; } = 1; } = 0x20000001;
        "
    );
}

#[deny(warnings)]
mod carriage_returns {
    rpc_macros::idl!(
        "cr",
        "
        /// One line\rand another,\r\n        /// then Windows line ends.\r
        struct Doc {
          /** A block\rwith a bare CR
           * and a normal line. */
          int x;
        };
        /// A procedure\rwith a bare CR.
        interface Cr version 1 { int f(Doc d); };
        "
    );
}

#[test]
fn underscore_digit_names_compile_and_round_trip() {
    use digits::*;
    assert_eq!(_2, 2);
    let value = _12::_14(7);
    let bytes = rpc_core::xdr::to_bytes(&value).unwrap();
    assert_eq!(rpc_core::xdr::from_bytes::<_12>(&bytes).unwrap(), value);
    assert_eq!(_4::_6 as i32, 3);
    let s = _7 {
        _8: 1,
        _9: 2,
        _10: _4::_5,
        _11: None,
    };
    let back: _7 = rpc_core::xdr::from_bytes(&rpc_core::xdr::to_bytes(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    assert_eq!(_18_PROCEDURES.len(), 2);
    assert_eq!(_23_INTERFACE.version, 1);
    let _unused: Option<_18Client<rpc_transport_tcp::TcpChannel>> = None;
}

#[test]
fn bare_carriage_returns_in_docs_become_line_breaks() {
    let source =
        rpc_macros::idl_source!("cr", "/// One line\rand another.\nstruct Doc { int x; };");
    assert!(!source.contains('\r'), "{source}");
    assert!(
        source.contains("/// One line\n/// and another."),
        "{source}"
    );
    assert_eq!(carriage_returns::Doc { x: 1 }.x, 1);
}
