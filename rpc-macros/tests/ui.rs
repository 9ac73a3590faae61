//! Compile tests of `idl!`: IDL errors are compile errors with the full rustc-style
//! message, pointing at the IDL literal; valid IDL compiles into a usable module.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/bad_idl.rs");
    t.compile_fail("tests/ui/bad_input.rs");
    t.compile_fail("tests/ui/unknown_type.rs");
    t.pass("tests/ui/pass_interface.rs");
}
