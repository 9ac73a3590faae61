//! IDL compiler errors, each pinned to its exact rendered message, plus the positive
//! cases the errors are measured against and a no-panic mutation test.

use rpc_codegen::model::{Definition, Interface, InterfaceOrigin, Spec, Type, Value};
use rpc_codegen::{parse, parse_and_check};

/// The rendered errors for `source` (which must fail to check).
fn error(file_name: &str, source: &str) -> String {
    match parse_and_check(file_name, source) {
        Ok(_) => panic!("expected an error for {source:?}"),
        Err(e) => e.to_string(),
    }
}

fn check(source: &str, expected: &str) {
    let actual = error("t.idl", source);
    assert_eq!(actual, expected, "\nactual:\n{actual}\n");
}

// ---- syntax and lexical errors ---------------------------------------------------

#[test]
fn missing_semicolon() {
    let actual = error(
        "proto/calc.idl",
        "interface Calc {\n  int func1(int arg1);\n  int func2(int arg1, int arg2)\n};\n",
    );
    assert_eq!(
        actual,
        "\
error: expected `;` after procedure declaration, found `}`
 --> proto/calc.idl:3:32
  |
3 |   int func2(int arg1, int arg2)
  |                                ^ expected `;`
  |"
    );
}

#[test]
fn unexpected_token() {
    check(
        "struct Point { int x; int y; }\nconst = 5;\n",
        "\
error: expected a constant name after `const`, found `=`
 --> t.idl:2:7
  |
2 | const = 5;
  |       ^ expected a constant name
  |",
    );
}

#[test]
fn keyword_as_name() {
    check(
        "struct S {\n  int case;\n};\n",
        "\
error: expected a name after the type, found keyword `case`
 --> t.idl:2:7
  |
2 |   int case;
  |       ^^^^ expected a name
  |
  = note: `case` is a reserved word and cannot be used as a name",
    );
}

#[test]
fn unexpected_end_of_file() {
    check(
        "struct S { int x; }\nstruct",
        "\
error: expected a struct name after `struct`, found end of file
 --> t.idl:2:7
  |
2 | struct
  |       ^ expected a struct name
  |",
    );
}

#[test]
fn unterminated_comment() {
    check(
        "const A = 1;\n/* never closed\nconst B = 2;\n",
        "\
error: unterminated block comment
 --> t.idl:2:1
  |
2 | /* never closed
  | ^^ this comment is never closed: expected `*/` before the end of the file
  |",
    );
}

#[test]
fn bad_character() {
    check(
        "const A = 1;\nconst B = 2 @ 3;\n",
        "\
error: unexpected character `@`
 --> t.idl:2:13
  |
2 | const B = 2 @ 3;
  |             ^ not valid in an IDL file
  |",
    );
}

#[test]
fn integer_overflow() {
    check(
        "const BIG = 99999999999999999999;\n",
        "\
error: integer literal is too large
 --> t.idl:1:13
  |
1 | const BIG = 99999999999999999999;
  |             ^^^^^^^^^^^^^^^^^^^^ does not fit in a 64-bit signed integer
  |
  = note: integer literals must be between -9223372036854775808 and 9223372036854775807",
    );
}

#[test]
fn bad_octal_digit() {
    check(
        "const X = 08;\n",
        "\
error: invalid digit `8` in octal literal
 --> t.idl:1:12
  |
1 | const X = 08;
  |            ^ not an octal digit
  |
  = note: a literal with a leading `0` is octal (RFC 4506); remove the leading zero for a decimal literal",
    );
}

#[test]
fn quadruple_unsupported() {
    check(
        "struct S {\n  quadruple q;\n};\n",
        "\
error: `quadruple` is not supported
 --> t.idl:2:3
  |
2 |   quadruple q;
  |   ^^^^^^^^^ 128-bit floating point has no Rust equivalent
  |
  = help: use `double` (64-bit) instead",
    );
}

#[test]
fn fixed_length_string() {
    check(
        "typedef string s[5];\n",
        "\
error: a string cannot have a fixed length
 --> t.idl:1:17
  |
1 | typedef string s[5];
  |                 ^^^ fixed length
  |
  = help: strings are variable-length: write `string name<N>`",
    );
}

// ---- names ---------------------------------------------------------------------

#[test]
fn undefined_type() {
    check(
        "struct Shape {\n  Pointt centre;\n};\nstruct Point { int x; };\n",
        "\
error: cannot find type `Pointt` in this file
 --> t.idl:2:3
  |
2 |   Pointt centre;
  |   ^^^^^^ not defined
  |
  = help: a type with a similar name exists: `Point`",
    );
}

#[test]
fn undefined_constant() {
    check(
        "struct S {\n  string name<MAX_NAME>;\n};\n",
        "\
error: cannot find constant `MAX_NAME` in this file
 --> t.idl:2:15
  |
2 |   string name<MAX_NAME>;
  |               ^^^^^^^^ not defined
  |",
    );
}

#[test]
fn duplicate_type() {
    check(
        "struct Point { int x; };\nenum Point { A };\n",
        "\
error: the name `Point` is defined more than once
 --> t.idl:2:6
  |
1 | struct Point { int x; };
  |        ----- previous definition of `Point` here
2 | enum Point { A };
  |      ^^^^^ `Point` redefined here
  |",
    );
}

#[test]
fn duplicate_field() {
    check(
        "struct Point {\n  int x;\n  int x;\n};\n",
        "\
error: field `x` is declared more than once in struct `Point`
 --> t.idl:3:7
  |
2 |   int x;
  |       - first declared here
3 |   int x;
  |       ^ field already declared
  |",
    );
}

#[test]
fn duplicate_enum_variant_across_enums() {
    check(
        "enum Op { ADD, SUB };\nenum Other { ADD = 5 };\n",
        "\
error: the name `ADD` is defined more than once
 --> t.idl:2:14
  |
1 | enum Op { ADD, SUB };
  |           --- previous definition of `ADD` here
2 | enum Other { ADD = 5 };
  |              ^^^ `ADD` redefined here
  |
  = note: enum variants share one namespace with types and constants, as in XDR",
    );
}

#[test]
fn const_used_as_type() {
    check(
        "const MAX = 10;\nstruct S {\n  MAX m;\n};\n",
        "\
error: expected a type, found constant `MAX`
 --> t.idl:3:3
  |
1 | const MAX = 10;
  |       --- `MAX` is defined here as a constant
2 | struct S {
3 |   MAX m;
  |   ^^^ not a type
  |",
    );
}

#[test]
fn type_used_as_value() {
    check(
        "struct Point { int x; };\nconst N = Point;\n",
        "\
error: expected a constant, found type `Point`
 --> t.idl:2:11
  |
1 | struct Point { int x; };
  |        ----- `Point` is defined here as a struct
2 | const N = Point;
  |           ^^^^^ not a constant
  |",
    );
}

#[test]
fn cyclic_constants() {
    check(
        "const A = B;\nconst B = A;\n",
        "\
error: constant `A` is defined in terms of itself
 --> t.idl:1:7
  |
1 | const A = B;
  |       ^ cyclic definition
  |",
    );
}

#[test]
fn builtin_name_redefined() {
    check(
        "struct String { int x; };",
        "\
error: `String` is a built-in type and cannot be redefined
 --> t.idl:1:8
  |
1 | struct String { int x; };
  |        ^^^^^^ built-in name
  |",
    );
}

// ---- types -----------------------------------------------------------------------

#[test]
fn infinite_recursion() {
    check(
        "struct Node {\n  int value;\n  Node next;\n};\n",
        "\
error: recursive type `Node` has infinite size
 --> t.idl:3:3
  |
3 |   Node next;
  |   ^^^^ recursive without indirection
  |
  = help: insert indirection: make it optional (`Node *next`) or a variable-length array (`Node next<>`)",
    );
}

#[test]
fn mutual_recursion() {
    check(
        "struct A { B b; };\nstruct B { A a; };\n",
        "\
error: recursive type `A` has infinite size
 --> t.idl:1:12
  |
1 | struct A { B b; };
  |            ^ recursive without indirection
  |
  = help: insert indirection: make it optional (`B *b`) or a variable-length array (`B b<>`)
  = note: the cycle goes through `A`, `B`",
    );
}

#[test]
fn negative_bound() {
    check(
        "struct S {\n  opaque data<-1>;\n};\n",
        "\
error: bound must be between 1 and 4294967295, found -1
 --> t.idl:2:15
  |
2 |   opaque data<-1>;
  |               ^^ invalid bound
  |",
    );
}

#[test]
fn zero_fixed_length() {
    check(
        "typedef opaque Digest[0];\n",
        "\
error: fixed length must be between 1 and 65536, found 0
 --> t.idl:1:23
  |
1 | typedef opaque Digest[0];
  |                       ^ invalid fixed length
  |
  = note: a fixed length of 0 encodes nothing",
    );
}

#[test]
fn enum_value_out_of_range() {
    check(
        "enum E { A = 0x80000000 };\n",
        "\
error: enum value 2147483648 is out of range
 --> t.idl:1:14
  |
1 | enum E { A = 0x80000000 };
  |              ^^^^^^^^^^ does not fit in a 32-bit signed integer
  |
  = note: enum values must be between -2147483648 and 2147483647",
    );
}

#[test]
fn empty_struct() {
    check(
        "struct Empty {};\n",
        "\
error: struct `Empty` has no fields
 --> t.idl:1:8
  |
1 | struct Empty {};
  |        ^^^^^ empty struct
  |
  = note: XDR structs need at least one field (RFC 4506 §6.3)",
    );
}

#[test]
fn void_struct_field() {
    check(
        "struct S {\n  void;\n};\n",
        "\
error: `void` is not allowed as a struct field
 --> t.idl:2:3
  |
2 |   void;
  |   ^^^^ `void` used here
  |
  = note: `void` can only be a union arm, a procedure's result, or a procedure's only (unnamed) argument",
    );
}

// ---- unions ----------------------------------------------------------------------

#[test]
fn non_integer_discriminant() {
    check(
        "union U switch (double d) {\n  case 1: int x;\n};\n",
        "\
error: union discriminant must be `int`, `unsigned int`, `bool` or an enum, found `double`
 --> t.idl:1:24
  |
1 | union U switch (double d) {
  |                        ^ not an integer type
  |",
    );
}

#[test]
fn duplicate_case_value() {
    check(
        "union U switch (int d) {\n  case 1: int x;\n  case 0x1: int y;\n};\n",
        "\
error: case value 1 is used more than once in union `U`
 --> t.idl:3:8
  |
2 |   case 1: int x;
  |        - first used here
3 |   case 0x1: int y;
  |        ^^^ duplicate case
  |",
    );
}

#[test]
fn case_from_another_enum() {
    check(
        "enum Op { ADD = 1 };\nenum Color { RED = 2 };\nunion U switch (Op op) {\n  case ADD: int x;\n  case RED: int y;\n};\n",
        "\
error: `RED` is not a variant of enum `Op`
 --> t.idl:5:8
  |
5 |   case RED: int y;
  |        ^^^ not a variant of `Op`
  |
  = note: `RED` is a variant of enum `Color`",
    );
}

// ---- interfaces ------------------------------------------------------------------

#[test]
fn duplicate_procedure_name() {
    check(
        "interface Calc {\n  int add(int a, int b);\n  int add(int a);\n};\n",
        "\
error: procedure `add` is defined more than once in interface `Calc`
 --> t.idl:3:7
  |
2 |   int add(int a, int b);
  |       --- first defined here
3 |   int add(int a);
  |       ^^^ defined again here
  |",
    );
}

#[test]
fn duplicate_procedure_number() {
    check(
        "interface Calc {\n  int add(int a, int b) = 5;\n  int sub(int a, int b) = 5;\n};\n",
        "\
error: procedure number 5 is used more than once in interface `Calc`
 --> t.idl:3:27
  |
2 |   int add(int a, int b) = 5;
  |       --- first used by `add`
3 |   int sub(int a, int b) = 5;
  |                           ^ duplicate number
  |",
    );
}

#[test]
fn duplicate_implicit_procedure_number() {
    check(
        "interface Calc {\n  int add(int a) = 2;\n  int sub(int a) = 1;\n  int mul(int a);\n  int div(int a) = 3;\n};\n",
        "\
error: procedure number 3 is used more than once in interface `Calc`
 --> t.idl:5:20
  |
4 |   int mul(int a);
  |       --- first used by `mul`
5 |   int div(int a) = 3;
  |                    ^ duplicate number
  |",
    );
}

#[test]
fn oneway_with_result() {
    check(
        "interface Log {\n  oneway int log(string line);\n};\n",
        "\
error: a `oneway` procedure must return `void`, found `int`
 --> t.idl:2:14
  |
2 |   oneway int log(string line);
  |              ^^^ oneway procedure with a result
  |
  = note: no reply is sent for a oneway call, so there is nothing to carry a result",
    );
}

#[test]
fn procedure_zero_is_reserved() {
    check(
        "interface Calc {\n  int add(int a) = 0;\n};\n",
        "\
error: procedure number 0 is reserved for the null procedure
 --> t.idl:2:20
  |
2 |   int add(int a) = 0;
  |                    ^ reserved number
  |
  = note: only `void name(void) = 0;` (RFC 5531's NULL procedure) may use number 0",
    );
}

#[test]
fn unknown_attribute() {
    check(
        "interface Calc {\n  [idempotant] int add(int a);\n};\n",
        "\
error: unknown attribute `idempotant`
 --> t.idl:2:4
  |
2 |   [idempotant] int add(int a);
  |    ^^^^^^^^^^ unknown attribute
  |
  = note: a procedure's attributes are `idempotent` and `inline`",
    );
}

#[test]
fn two_interface_semantics() {
    check(
        "[exactly_once, at_least_once] interface Calc {\n  int add(int a);\n};\n",
        "\
error: interface `Calc` is given two delivery semantics, `exactly_once` and `at_least_once`
 --> t.idl:1:16
  |
1 | [exactly_once, at_least_once] interface Calc {
  |  ------------  ^^^^^^^^^^^^^ second semantics
  |  |
  |  first semantics
  |
  = note: an interface takes at most one of `at_most_once`, `at_least_once` and `exactly_once`",
    );
}

#[test]
fn two_program_semantics_reported_once() {
    check(
        "[at_most_once, exactly_once]\nprogram P {\n  version V1 { int f(void) = 1; } = 1;\n  version V2 { int f(void) = 1; } = 2;\n} = 0x20000001;\n",
        "\
error: program `P` is given two delivery semantics, `at_most_once` and `exactly_once`
 --> t.idl:1:16
  |
1 | [at_most_once, exactly_once]
  |  ------------  ^^^^^^^^^^^^ second semantics
  |  |
  |  first semantics
  |
  = note: an interface takes at most one of `at_most_once`, `at_least_once` and `exactly_once`",
    );
}

#[test]
fn unknown_interface_attribute() {
    check(
        "[exacly_once]\ninterface Calc {\n  int add(int a);\n};\n",
        "\
error: unknown attribute `exacly_once`
 --> t.idl:1:2
  |
1 | [exacly_once]
  |  ^^^^^^^^^^^ unknown attribute
  |
  = note: an interface's attributes are `at_most_once`, `at_least_once` and `exactly_once`",
    );
}

#[test]
fn repeated_interface_attribute() {
    check(
        "[exactly_once, exactly_once] interface Calc { int f(); };\n",
        "\
error: attribute `exactly_once` is given more than once
 --> t.idl:1:16
  |
1 | [exactly_once, exactly_once] interface Calc { int f(); };
  |  ------------  ^^^^^^^^^^^^ repeated attribute
  |  |
  |  first given here
  |",
    );
}

#[test]
fn procedure_attribute_on_interface_and_back() {
    check(
        "[idempotent] interface Calc {\n  [exactly_once] int f();\n};\n",
        "\
error: unknown attribute `idempotent`
 --> t.idl:1:2
  |
1 | [idempotent] interface Calc {
  |  ^^^^^^^^^^ unknown attribute
  |
  = note: an interface's attributes are `at_most_once`, `at_least_once` and `exactly_once`
  = help: `idempotent` belongs on a procedure: `[idempotent] int name(...);`

error: unknown attribute `exactly_once`
 --> t.idl:2:4
  |
2 |   [exactly_once] int f();
  |    ^^^^^^^^^^^^ unknown attribute
  |
  = note: a procedure's attributes are `idempotent` and `inline`
  = help: `exactly_once` sets the default semantics of a whole interface: write `[exactly_once] interface Name ...`",
    );
}

#[test]
fn attributes_before_a_type() {
    check(
        "[exactly_once] struct S { int x; };\n",
        "\
error: expected `interface` or `program` after attributes, found keyword `struct`
 --> t.idl:1:16
  |
1 | [exactly_once] struct S { int x; };
  |                ^^^^^^ expected `interface` or `program`
  |",
    );
}

#[test]
fn start_method_collides_with_a_procedure() {
    check(
        "interface Calc {\n  int ping();\n  int start_ping();\n};\n",
        "\
error: `ping` and `start_ping` both become the Rust name `start_ping`
 --> t.idl:3:7
  |
2 |   int ping();
  |       ---- generates the client method `start_ping`
3 |   int start_ping();
  |       ^^^^^^^^^^ also becomes `start_ping`
  |
  = note: the clients have a method `start_p` for every procedure `p`, which starts the call and returns a handle to it",
    );
}

#[test]
fn duplicate_argument() {
    check(
        "interface Calc {\n  int add(int a, int a);\n};\n",
        "\
error: argument `a` is declared more than once in procedure `add`
 --> t.idl:2:22
  |
2 |   int add(int a, int a);
  |               -      ^ argument already declared
  |               |
  |               first declared here
  |",
    );
}

#[test]
fn duplicate_interface_version() {
    check(
        "interface Calc { int f(); };\ninterface Calc { int g(); };\n",
        "\
error: interface `Calc` version 1 is defined more than once
 --> t.idl:2:11
  |
1 | interface Calc { int f(); };
  |           ---- first defined here
2 | interface Calc { int g(); };
  |           ^^^^ defined again here
  |",
    );
}

#[test]
fn void_among_arguments() {
    check(
        "interface Calc {\n  int f(void, int a);\n};\n",
        "\
error: `void` is not allowed as a named argument or next to other arguments
 --> t.idl:2:9
  |
2 |   int f(void, int a);
  |         ^^^^ `void` used here
  |
  = note: `void` can only be a union arm, a procedure's result, or a procedure's only (unnamed) argument",
    );
}

#[test]
fn anonymous_interface_needs_a_usable_file_name() {
    let actual = error("proto/1.idl", "interface { int f(); };");
    assert_eq!(
        actual,
        "\
error: cannot name this interface after the file name `proto/1.idl`
 --> proto/1.idl:1:1
  |
1 | interface { int f(); };
  | ^^^^^^^^^ anonymous interface
  |
  = help: give the interface a name: `interface Name { ... };`"
    );
}

#[test]
fn several_errors_are_all_reported_in_source_order() {
    let err = parse_and_check(
        "t.idl",
        "struct A { B b; int a; int a; };\nstruct C { D d; };\n",
    )
    .unwrap_err();
    let messages: Vec<&str> = err.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "cannot find type `B` in this file",
            "field `a` is declared more than once in struct `A`",
            "cannot find type `D` in this file",
        ]
    );
    let first = &err.as_slice()[0];
    assert_eq!(first.byte_range(), (11, 12));
    assert_eq!(first.line_col(err.source_text()), (1, 12));
}

// ---- generated Rust names ----------------------------------------------------------

#[test]
fn types_collide_after_camel_case() {
    check(
        "struct foo_bar { int x; };\nstruct FooBar { int y; };\n",
        "\
error: `foo_bar` and `FooBar` both become the Rust name `FooBar`
 --> t.idl:2:8
  |
1 | struct foo_bar { int x; };
  |        ------- becomes `FooBar`
2 | struct FooBar { int y; };
  |        ^^^^^^ also becomes `FooBar`
  |
  = note: structs, enums, unions and typedefs become Rust types named in UpperCamelCase, in one Rust namespace",
    );
}

#[test]
fn struct_collides_with_generated_client() {
    check(
        "struct CalcClient { int x; };\ninterface Calc { int f(); };\n",
        "\
error: `CalcClient` and `Calc` both become the Rust name `CalcClient`
 --> t.idl:2:11
  |
1 | struct CalcClient { int x; };
  |        ---------- becomes `CalcClient`
2 | interface Calc { int f(); };
  |           ^^^^ also generates the async client `CalcClient`
  |
  = note: an interface `Name` becomes the trait `Name` and the types `NameClient`, `NameBlockingClient` and `NameServer` (with `V<version>` after `Name` when two interfaces share a name), in one Rust namespace with the file's types",
    );
}

#[test]
fn versioned_interface_names_collide() {
    // Two `Calc`s become `CalcV1` and `CalcV2`; the interface `CalcV1` keeps its name.
    check(
        "interface Calc version 1 { int f(); };\ninterface Calc version 2 { int f(); };\ninterface CalcV1 { int g(); };\n",
        "\
error: `Calc` and `CalcV1` both become the Rust name `CalcV1`
 --> t.idl:3:11
  |
1 | interface Calc version 1 { int f(); };
  |           ---- becomes the trait `CalcV1`
2 | interface Calc version 2 { int f(); };
3 | interface CalcV1 { int g(); };
  |           ^^^^^^ also becomes the trait `CalcV1`
  |
  = note: an interface `Name` becomes the trait `Name` and the types `NameClient`, `NameBlockingClient` and `NameServer` (with `V<version>` after `Name` when two interfaces share a name), in one Rust namespace with the file's types",
    );
}

#[test]
fn constants_collide_after_screaming_case() {
    check(
        "const maxName = 1;\nconst MAX_NAME = 2;\n",
        "\
error: `maxName` and `MAX_NAME` both become the Rust name `MAX_NAME`
 --> t.idl:2:7
  |
1 | const maxName = 1;
  |       ------- becomes `MAX_NAME`
2 | const MAX_NAME = 2;
  |       ^^^^^^^^ also becomes `MAX_NAME`
  |
  = note: constants become Rust constants named in SCREAMING_SNAKE_CASE",
    );
}

#[test]
fn constant_collides_with_interface_static() {
    check(
        "interface Calc { int f(); };\nconst CALC_INTERFACE = 1;\n",
        "\
error: `Calc` and `CALC_INTERFACE` both become the Rust name `CALC_INTERFACE`
 --> t.idl:2:7
  |
1 | interface Calc { int f(); };
  |           ---- generates the static `CALC_INTERFACE`
2 | const CALC_INTERFACE = 1;
  |       ^^^^^^^^^^^^^^ also becomes `CALC_INTERFACE`
  |
  = note: an interface `Name` defines the statics `NAME_INTERFACE` and `NAME_PROCEDURES`, in one Rust namespace with the constants (named in SCREAMING_SNAKE_CASE)",
    );
}

#[test]
fn struct_fields_collide_after_snake_case() {
    check(
        "struct Point {\n  int numItems;\n  int num_items;\n};\n",
        "\
error: `numItems` and `num_items` both become the Rust name `num_items`
 --> t.idl:3:7
  |
2 |   int numItems;
  |       -------- becomes `num_items`
3 |   int num_items;
  |       ^^^^^^^^^ also becomes `num_items`
  |
  = note: struct fields become Rust fields named in snake_case",
    );
}

#[test]
fn enum_variants_collide_after_camel_case() {
    check(
        "enum Op { ADD, Add };\n",
        "\
error: `ADD` and `Add` both become the Rust name `Add`
 --> t.idl:1:16
  |
1 | enum Op { ADD, Add };
  |           ---  ^^^ also becomes `Add`
  |           |
  |           becomes `Add`
  |
  = note: enum variants become Rust variants named in UpperCamelCase",
    );
}

#[test]
fn procedures_collide_after_snake_case() {
    check(
        "interface Calc {\n  int getValue();\n  int get_value();\n};\n",
        "\
error: `getValue` and `get_value` both become the Rust name `get_value`
 --> t.idl:3:7
  |
2 |   int getValue();
  |       -------- becomes `get_value`
3 |   int get_value();
  |       ^^^^^^^^^ also becomes `get_value`
  |
  = note: procedures become methods of the generated clients and server trait, named in snake_case; names the clients use themselves (`new`, `client`, `with_options`, ...) get a trailing `_`",
    );
}

#[test]
fn escaped_procedure_collides() {
    check(
        "interface Calc {\n  int new();\n  int new_();\n};\n",
        "\
error: `new` and `new_` both become the Rust name `new_`
 --> t.idl:3:7
  |
2 |   int new();
  |       --- becomes `new_`
3 |   int new_();
  |       ^^^^ also becomes `new_`
  |
  = note: procedures become methods of the generated clients and server trait, named in snake_case; names the clients use themselves (`new`, `client`, `with_options`, ...) get a trailing `_`",
    );
}

#[test]
fn arguments_collide_after_snake_case() {
    check(
        "interface Calc {\n  int f(int fooBar, int foo_bar);\n};\n",
        "\
error: `fooBar` and `foo_bar` both become the Rust name `foo_bar`
 --> t.idl:2:25
  |
2 |   int f(int fooBar, int foo_bar);
  |             ------      ^^^^^^^ also becomes `foo_bar`
  |             |
  |             becomes `foo_bar`
  |
  = note: arguments become Rust parameters named in snake_case; unnamed ones are `arg1`, `arg2`, ..., and names the generated code uses itself (`ctx`, `args`, `w`, ...) get a trailing `_`",
    );
}

#[test]
fn unnamed_argument_collides() {
    check(
        "interface Calc {\n  int f(int, int arg1);\n};\n",
        "\
error: unnamed argument 1 and `arg1` both become the Rust name `arg1`
 --> t.idl:2:18
  |
2 |   int f(int, int arg1);
  |         ---      ^^^^ also becomes `arg1`
  |         |
  |         becomes `arg1`
  |
  = note: arguments become Rust parameters named in snake_case; unnamed ones are `arg1`, `arg2`, ..., and names the generated code uses itself (`ctx`, `args`, `w`, ...) get a trailing `_`",
    );
}

#[test]
fn same_idl_name_is_reported_once() {
    // Already a duplicate-name error: no second "both become" error for it.
    let err = parse_and_check(
        "t.idl",
        "interface Calc { int f(); };\nstruct Calc { int x; };\ninterface calc { int f(); };\n",
    )
    .unwrap_err();
    let messages: Vec<&str> = err.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "the name `Calc` is used by both an interface and a struct",
            "`Calc` and `calc` both become the Rust name `CalcV1`",
        ]
    );
}

// ---- positive cases ----------------------------------------------------------------

const SEED: &str = "interface {\n  int func1(int arg1);\n  int func2(int arg1, int arg2);\n};\n";

const CALC: &str = r#"package calc;                                  // optional: the Rust module name
const MAX_NAME = 64;
typedef opaque Digest[32];                     // fixed-length bytes
enum Op { ADD = 1, SUB = 2, MUL = 3 };
struct Point { int x; int y; };
struct Shape { string name<MAX_NAME>; Point points<>; Point *centre; Op op; };
union Result switch (int status) { case 0: double value; default: string error<>; };

interface Calc version 1 {                     // optional "= 0x20000001" id and version
  int add(int a, int b);
  [idempotent] double mean(double xs<>);       // variable-length array
  string echo(string s);
  opaque put(opaque blob<>);                   // bytes: the zero-copy path
  Shape scale(Shape s, float k);
  void ping();
  oneway void log(string line);                // no reply, at-most-once
};
"#;

const RPCGEN: &str = r#"/*
 * calc.x: an rpcgen-style file.
 */
%#include <stdio.h>
#define UNUSED 1
const MAXLEN = 0x100;
const PERMS = 0755;
const NEG = -010;
typedef string name_t<MAXLEN>;
struct pair { int a; unsigned b; };
enum color { RED, GREEN = 010, BLUE };
union result switch (color c) {
case RED:
    int x;
case GREEN:
case BLUE:
    void;
};
program CALC_PROG {
    version CALC_V1 {
        void CALC_NULL(void) = 0;
        int ADD(pair) = 1;
        name_t NAME(unsigned) = 2;
    } = 1;
    version CALC_V2 {
        int ADD(pair) = 1;
        hyper MUL(int, int) = 2;
    } = 2;
} = 0x20000099;
"#;

#[test]
fn seed_interface() {
    let spec = parse_and_check("seed.idl", SEED).unwrap();
    assert_eq!(spec.interfaces.len(), 1);
    let iface = &spec.interfaces[0];
    assert_eq!(iface.name.name, "Seed");
    assert_eq!(iface.origin, InterfaceOrigin::Anonymous);
    assert_eq!(iface.version.get(), 1);
    assert_eq!(
        iface.resolved_id,
        Some(rpc_codegen::check::default_interface_id(None, "Seed"))
    );
    let procs: Vec<(&str, Option<u32>, usize)> = iface
        .procedures
        .iter()
        .map(|p| (p.name.name.as_str(), p.resolved_number, p.args.len()))
        .collect();
    assert_eq!(procs, [("func1", Some(1), 1), ("func2", Some(2), 2)]);
    assert_eq!(
        iface.procedures[1].args[1].name.as_ref().unwrap().name,
        "arg2"
    );
    assert_eq!(iface.procedures[1].ret, Type::Int);

    let spec = parse_and_check("proto/my_calc.idl", SEED).unwrap();
    assert_eq!(spec.interfaces[0].name.name, "MyCalc");
}

#[test]
fn design_calc_example() {
    let spec = parse_and_check("proto/calc.idl", CALC).unwrap();
    assert_eq!(spec.package.as_ref().unwrap().name, "calc");
    assert_eq!(spec.definitions.len(), 6);
    let iface = &spec.interfaces[0];
    assert_eq!(iface.name.name, "Calc");
    assert_eq!(
        iface.resolved_id,
        Some(rpc_codegen::check::default_interface_id(
            Some("calc"),
            "Calc"
        ))
    );
    let numbers: Vec<u32> = iface
        .procedures
        .iter()
        .map(|p| p.resolved_number.unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    let mean = &iface.procedures[1];
    assert!(mean.is_idempotent());
    assert!(
        matches!(&mean.args[0].ty, Type::VarArray { elem, max: None } if **elem == Type::Double)
    );
    assert_eq!(iface.procedures[2].ret, Type::String { max: None });
    assert_eq!(iface.procedures[3].ret, Type::VarOpaque { max: None });
    assert!(iface.procedures[5].args.is_empty());
    assert!(iface.procedures[6].oneway);
    let Definition::Struct(shape) = &spec.definitions[4] else {
        panic!("Shape is a struct")
    };
    assert!(matches!(&shape.fields[0].ty, Type::String { max: Some(v) } if v.get() == 64));
    assert!(matches!(
        &shape.fields[2].ty,
        Type::Optional { boxed: false, .. }
    ));
    let Definition::Union(result) = &spec.definitions[5] else {
        panic!("Result is a union")
    };
    assert_eq!(result.cases[0].values[0].get(), 0);
    assert_eq!(result.default.as_ref().unwrap().name.name, "error");
    assert_all_resolved(&spec);
}

#[test]
fn interface_attributes_are_parsed() {
    let spec = parse_and_check(
        "t.idl",
        "/// Docs before.\n[exactly_once]\n/// And after.\ninterface Calc { int f(); };\n\
         interface Plain { int g(); };\n\
         [at_least_once] program P { version V1 { int f(void) = 1; } = 1; version V2 { int f(void) = 1; } = 2; } = 0x20000001;\n",
    )
    .unwrap();
    let attrs: Vec<(&str, Vec<&str>, Option<&str>)> = spec
        .interfaces
        .iter()
        .map(|i| {
            (
                i.name.name.as_str(),
                i.attributes.iter().map(|a| a.name.as_str()).collect(),
                i.default_semantics(),
            )
        })
        .collect();
    assert_eq!(
        attrs,
        [
            ("Calc", vec!["exactly_once"], Some("exactly_once")),
            ("Plain", vec![], None),
            ("PV1", vec!["at_least_once"], Some("at_least_once")),
            ("PV2", vec!["at_least_once"], Some("at_least_once")),
        ]
    );
    assert_eq!(spec.interfaces[0].docs, ["Docs before.", "And after."]);
}

#[test]
fn rpcgen_program_is_lowered() {
    let spec = parse_and_check("calc.x", RPCGEN).unwrap();
    assert_eq!(spec.passthrough, ["#include <stdio.h>"]);
    let consts: Vec<(&str, i64)> = spec
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Const(c) => Some((c.name.name.as_str(), c.value.get())),
            _ => None,
        })
        .collect();
    // Program, version and procedure names are constants too (rpcgen `#define`s
    // them); a name repeated in a later version keeps its first value.
    assert_eq!(
        consts,
        [
            ("MAXLEN", 256),
            ("PERMS", 0o755),
            ("NEG", -8),
            ("CALC_PROG", 0x20000099),
            ("CALC_V1", 1),
            ("CALC_NULL", 0),
            ("ADD", 1),
            ("NAME", 2),
            ("CALC_V2", 2),
            ("MUL", 2),
        ]
    );
    let Definition::Struct(pair) = &spec.definitions[4] else {
        panic!("pair is a struct")
    };
    assert_eq!(pair.fields[1].ty, Type::UnsignedInt);
    let Definition::Enum(color) = &spec.definitions[5] else {
        panic!("color is an enum")
    };
    let values: Vec<Option<i64>> = color.variants.iter().map(|v| v.resolved).collect();
    assert_eq!(values, [Some(0), Some(8), Some(9)]);

    type Summary<'a> = (&'a str, i64, Option<u32>, Vec<(&'a str, Option<u32>)>);
    let summary: Vec<Summary<'_>> = spec
        .interfaces
        .iter()
        .map(|i: &Interface| {
            (
                i.name.name.as_str(),
                i.version.get(),
                i.resolved_id,
                i.procedures
                    .iter()
                    .map(|p| (p.name.name.as_str(), p.resolved_number))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "CalcProgV1",
                1,
                Some(0x2000_0099),
                vec![("CALC_NULL", Some(0)), ("ADD", Some(1)), ("NAME", Some(2))]
            ),
            (
                "CalcProgV2",
                2,
                Some(0x2000_0099),
                vec![("ADD", Some(1)), ("MUL", Some(2))]
            ),
        ]
    );
    let v1 = &spec.interfaces[0];
    assert!(
        matches!(&v1.origin, InterfaceOrigin::Program { program, version }
        if program.name == "CALC_PROG" && version.name == "CALC_V1")
    );
    assert!(v1.procedures[0].args.is_empty());
    assert!(v1.procedures[1].args[0].name.is_none());
    assert_eq!(v1.procedures[2].args[0].ty, Type::UnsignedInt);
    assert_all_resolved(&spec);

    // One version: no `V<n>` suffix.
    let spec = parse_and_check(
        "p.x",
        "program PING_PROG { version PING_V { void PING(void) = 0; } = 3; } = 0x20000001;",
    )
    .unwrap();
    assert_eq!(spec.interfaces[0].name.name, "PingProg");
    assert_eq!(spec.interfaces[0].version.get(), 3);
}

#[test]
fn recursive_list_is_boxed() {
    let spec = parse_and_check("list.idl", "struct Node { int v; Node *next; };").unwrap();
    let Definition::Struct(node) = &spec.definitions[0] else {
        panic!("Node is a struct")
    };
    assert!(matches!(
        node.fields[1].ty,
        Type::Optional { boxed: true, .. }
    ));

    // Recursion through a typedef'd optional boxes the typedef; through a
    // variable-length array nothing is boxed; a plain optional is not boxed.
    let spec = parse_and_check(
        "t.idl",
        "typedef Node *NodePtr;\nstruct Node { int v; NodePtr next; Node kids<>; Point *p; };\nstruct Point { int x; };",
    )
    .unwrap();
    let Definition::Typedef(ptr) = &spec.definitions[0] else {
        panic!("NodePtr is a typedef")
    };
    assert!(matches!(ptr.decl.ty, Type::Optional { boxed: true, .. }));
    let Definition::Struct(node) = &spec.definitions[1] else {
        panic!("Node is a struct")
    };
    assert!(matches!(
        node.fields[3].ty,
        Type::Optional { boxed: false, .. }
    ));
}

#[test]
fn numbering_continues_after_explicit_numbers() {
    let spec = parse_and_check(
        "t.idl",
        "interface I version 2 = 0x20000001 { void a(); void b() = 5; void c(); void d() = 3; void e(); };",
    )
    .unwrap();
    let numbers: Vec<Option<u32>> = spec.interfaces[0]
        .procedures
        .iter()
        .map(|p| p.resolved_number)
        .collect();
    assert_eq!(numbers, [Some(1), Some(5), Some(6), Some(3), Some(7)]);
    assert_eq!(spec.interfaces[0].resolved_id, Some(0x2000_0001));
    assert_eq!(spec.interfaces[0].version.get(), 2);
}

#[test]
fn rust_spellings_and_docs() {
    let spec = parse_and_check(
        "t.idl",
        "/// A point.\n/// Two ints.\nstruct P { i32 x; u64 y; f64 z; String s; Bytes b; Vec<Vec<P>> kids; Option<P> next; };\n\
         interface I {\n  /** Gets it.\n   * Really. */\n  Vec<int> get(Option<P> p, string s<64>, opaque blob<>, P *q, Vec<P> ps);\n  string<64> name();\n  P * find();\n};",
    )
    .unwrap();
    let Definition::Struct(p) = &spec.definitions[0] else {
        panic!("P is a struct")
    };
    assert_eq!(p.docs, ["A point.", "Two ints."]);
    assert_eq!(p.fields[0].ty, Type::Int);
    assert_eq!(p.fields[1].ty, Type::UnsignedHyper);
    assert_eq!(p.fields[2].ty, Type::Double);
    assert_eq!(p.fields[3].ty, Type::String { max: None });
    assert_eq!(p.fields[4].ty, Type::VarOpaque { max: None });
    assert!(matches!(p.fields[6].ty, Type::Optional { boxed: true, .. }));
    let get = &spec.interfaces[0].procedures[0];
    assert_eq!(get.docs, ["Gets it.", "Really."]);
    assert!(matches!(&get.ret, Type::VarArray { elem, .. } if **elem == Type::Int));
    assert_eq!(get.args.len(), 5);
    assert!(matches!(&get.args[1].ty, Type::String { max: Some(v) } if v.get() == 64));
    assert!(matches!(
        &spec.interfaces[0].procedures[1].ret,
        Type::String { max: Some(_) }
    ));
    assert!(matches!(
        &spec.interfaces[0].procedures[2].ret,
        Type::Optional { .. }
    ));
}

#[test]
fn c_style_typedefs_and_bool_unions() {
    let spec = parse_and_check(
        "t.idl",
        "typedef struct { int x; } pt;\ntypedef enum { A, B } ab;\nunion u switch (bool ok) { case TRUE: struct pt p; case FALSE: void; };",
    )
    .unwrap();
    let names: Vec<&str> = spec
        .definitions
        .iter()
        .map(|d| d.name().name.as_str())
        .collect();
    assert_eq!(names, ["pt", "ab", "u"]);
}

#[test]
fn distinct_rust_names_are_accepted() {
    // Union variants are de-duplicated by the generator (`X`, `XCase1`), interfaces
    // sharing a name get `V<version>`, and items in different Rust namespaces may
    // share a name.
    parse_and_check(
        "t.idl",
        "union U switch (int d) { case 0: int x; case 1: int X; };
         interface Calc version 1 { int f(); };
interface calc version 2 { int f(); };
         const point = 1;
struct POINT { int point; };
enum E { POINT_A };
struct S { int pointA; };
",
    )
    .unwrap();
}

#[test]
fn parse_alone_leaves_values_unresolved() {
    let spec = parse("seed.idl", "const A = 1;").unwrap();
    let Definition::Const(a) = &spec.definitions[0] else {
        panic!("A is a const")
    };
    assert_eq!(a.value.resolved, None);
}

// ---- robustness --------------------------------------------------------------------

/// Every value, number and id of a checked spec is resolved (`Value::get` panics if not).
fn assert_all_resolved(spec: &Spec) {
    fn ty(t: &Type) {
        match t {
            Type::String { max } | Type::VarOpaque { max } => max.iter().for_each(value),
            Type::FixedOpaque { len } => value(len),
            Type::FixedArray { elem, len } => {
                ty(elem);
                value(len);
            }
            Type::VarArray { elem, max } => {
                ty(elem);
                max.iter().for_each(value);
            }
            Type::Optional { elem, .. } => ty(elem),
            _ => {}
        }
    }
    fn value(v: &Value) {
        v.get();
    }
    for def in &spec.definitions {
        match def {
            Definition::Const(c) => value(&c.value),
            Definition::StringConst(_) => {}
            Definition::Typedef(t) => ty(&t.decl.ty),
            Definition::Enum(e) => e.variants.iter().for_each(|v| {
                assert!(v.resolved.is_some());
                v.value.iter().for_each(value);
            }),
            Definition::Struct(s) => s.fields.iter().for_each(|f| ty(&f.ty)),
            Definition::Union(u) => {
                ty(&u.discriminant.ty);
                for case in &u.cases {
                    case.values.iter().for_each(value);
                    ty(&case.arm.ty);
                }
                u.default.iter().for_each(|d| ty(&d.ty));
            }
        }
    }
    for iface in &spec.interfaces {
        value(&iface.version);
        iface.id.iter().for_each(value);
        assert!(iface.resolved_id.is_some());
        for p in &iface.procedures {
            assert!(p.resolved_number.is_some());
            ty(&p.ret);
            p.args.iter().for_each(|a| ty(&a.ty));
            p.number.iter().for_each(value);
        }
    }
}

/// Parses, checks and renders; must never panic, and a success must be fully resolved.
fn no_panic(file_name: &str, source: &str) {
    match parse_and_check(file_name, source) {
        Ok(spec) => assert_all_resolved(&spec),
        Err(e) => {
            assert!(!e.is_empty());
            let text = e.to_string();
            assert!(text.starts_with("error: "), "{text}");
            for d in &e {
                let _ = d.line_col(source);
            }
        }
    }
}

#[test]
fn truncations_and_mutations_never_panic() {
    let full = format!("{CALC}\n{RPCGEN}\nstruct Node {{ int v; Node *next; }};\n/// doc\ninterface {{ int f(int a); }};\n");
    let chars: Vec<char> = full.chars().collect();
    // Every prefix and every suffix.
    for cut in 0..=chars.len() {
        let prefix: String = chars[..cut].iter().collect();
        no_panic("seed.idl", &prefix);
        let suffix: String = chars[cut..].iter().collect();
        no_panic("seed.idl", &suffix);
    }
    // Deterministic random edits: delete, duplicate, or insert a troublesome token.
    let inserts = [
        "{",
        "}",
        "(",
        ")",
        "<",
        ">",
        "[",
        "]",
        ";",
        ",",
        "=",
        "*",
        ":",
        "void",
        "0",
        "-1",
        "0x",
        "99999999999999999999",
        "/*",
        "*/",
        "///",
        "%",
        "#",
        "é",
        "\t",
        "\r\n",
        "case",
        "default",
        "struct",
        "union",
        "enum",
        "typedef",
        "const",
        "interface",
        "program",
        "version",
        "oneway",
        "Vec<",
        "Option<",
        "string",
        "opaque",
        "quadruple",
        "Node",
        "MAX_NAME",
        "TRUE",
        "unsigned",
        "0xFFFFFFFF",
        "4294967296",
        "\u{0}",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound.max(1)
    };
    for _ in 0..3000 {
        let mut text = chars.clone();
        for _ in 0..=next(3) {
            let at = next(text.len() + 1);
            match next(3) {
                0 => {
                    let end = (at + next(12)).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let end = (at + next(40)).min(text.len());
                    let copy: Vec<char> = text[at..end].to_vec();
                    text.splice(at..at, copy);
                }
                _ => {
                    let word = inserts[next(inserts.len())];
                    text.splice(at..at, format!(" {word} ").chars());
                }
            }
        }
        let source: String = text.into_iter().collect();
        no_panic("fuzz.idl", &source);
    }
}

#[test]
fn pathological_inputs_never_panic() {
    no_panic("t.idl", &"Vec<".repeat(100_000));
    no_panic(
        "t.idl",
        &format!("struct S {{ {} x; }};", "Option<".repeat(5000)),
    );
    no_panic("t.idl", &"{".repeat(100_000));
    // Long chains of constants and implicit enum values.
    let mut consts = String::from("const C0 = 1;\n");
    for i in 1..5000 {
        consts.push_str(&format!("const C{i} = C{};\n", i - 1));
    }
    no_panic("t.idl", &consts);
    let mut backwards = String::from("enum E { ");
    for i in 0..20_000 {
        backwards.push_str(&format!("V{i}, "));
    }
    backwards.push_str("};\nconst X = V19999;\n");
    no_panic("t.idl", &backwards);
    let forward = format!(
        "const X = V19999;\n{}",
        backwards.replace("const X = V19999;\n", "")
    );
    no_panic("t.idl", &forward);
    let mut forward_consts = String::new();
    for i in 0..1000 {
        forward_consts.push_str(&format!("const C{i} = C{};\n", i + 1));
    }
    forward_consts.push_str("const C1000 = 7;\n");
    no_panic("t.idl", &forward_consts);
}

/// Found by fuzzing: `typedef a *a;` and `typedef b x<>; typedef x *b;` passed the
/// checker and the generator looped on them.
#[test]
fn a_typedef_of_itself_is_an_error() {
    for src in [
        "typedef a *a;\nstruct s { a *b; };\n",
        "typedef a *a;\n",
        "typedef b x<>;\ntypedef x *b;\n",
        "typedef b x<>;\ntypedef x b[2];\n",
        "typedef y x<>;\ntypedef x y<4>;\n",
        "typedef a a<>;\n",
    ] {
        let err = rpc_codegen::parse_and_check("t.idl", src).unwrap_err();
        assert!(
            err.to_string().contains("is defined in terms of itself"),
            "{err}"
        );
    }
}

/// A typedef reached through a struct is not an alias cycle: `list` is `Vec<S>` and `S`
/// a struct holding a `list`.
#[test]
fn a_typedef_cycle_through_a_struct_is_fine() {
    let src = "struct s { list next; int v; };\ntypedef s list<>;\ntypedef s *maybe;\nstruct t { maybe m; };\n";
    let spec = rpc_codegen::parse_and_check("t.idl", src).expect("checks");
    let rust = rpc_codegen::generate::generate(&spec);
    syn::parse_file(&rust).expect("generated Rust parses");
}

/// A doc comment that documents nothing (before `package`, a stray `;`, or the end of
/// the file) is an error rather than dropped silently.
#[test]
fn a_doc_comment_that_documents_nothing_is_an_error() {
    for (src, what, line) in [
        (
            "/// The calculator.\npackage calc;\ninterface { void ping(); };\n",
            "`package`",
            1,
        ),
        (
            "interface { void ping(); };\n\n/// trailing\n",
            "the end of the file",
            3,
        ),
        ("/** stray */ ;\nconst A = 1;\n", "a stray `;`", 1),
    ] {
        let err = rpc_codegen::parse_and_check("t.idl", src).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("doc comment before {what} documents nothing")),
            "{text}"
        );
        assert!(text.contains(&format!("t.idl:{line}:1")), "{text}");
    }
    // Documented definitions are fine, with or without a package.
    rpc_codegen::parse_and_check("t.idl", "package p;\n/// A.\nconst A = 1;\n").unwrap();
}

/// Found by the idl_text fuzz target: a line of form feeds and replacement characters
/// made annotate-snippets' margin arithmetic overflow (a panic with overflow checks, as
/// in a build script). Control characters and odd whitespace now render as spaces.
#[test]
fn form_feeds_and_odd_whitespace_render_without_panicking() {
    let inputs = [
        "\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{fffd}\u{fffd}\u{c}\u{c}1\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}+",
        "\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}\u{c}+",
        "\u{2028}\u{2028}\u{3000}\u{85}\u{c}\u{b} const A = ;",
        // A caret on a control character in the indentation (the second finding).
        "/// Recursion, typedef'd bounds, keywords and the corners of unions.\u{a}const MAX_ITEMS = 8;\u{a}const MIN_TEMP = -40;\u{a}const BIG = 0x100000000se(Node *head);\u{a}  Paint paint(Color c, Name who);\u{a}  \u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}9\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{2}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}\u{4}Code classify(Maybe m, Signed s, Keywords k);\u{a}  void move(inht r, int w, int ctx, Names ne%w);\u{a}  oneway void new(int self);\u{a}  Label first(Names names) = 7;\u{a}};\u{a}",
        "  \u{4}\u{4}\u{0} const",
        // Two- and three-byte controls and spaces before the error: the column shown
        // must stay the character column (the third finding).
        "  c\u{85}\u{85}\u{2028}\u{fffd} x",
    ];
    for src in inputs {
        if let Err(e) = rpc_codegen::parse_and_check("t.idl", src) {
            let text = e.to_string();
            // The first 100 are drawn; the rest are counted.
            for d in e.iter().take(100) {
                let (line, col) = d.line_col(src);
                assert!(
                    text.contains(&format!("t.idl:{line}:{col}")),
                    "t.idl:{line}:{col} not in {text}"
                );
            }
        }
    }
}
