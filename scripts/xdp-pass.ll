; An XDP program that passes every frame (XDP_PASS = 2). scripts/lab.sh
; attaches it to the lab's veth ports when VETH_NAPI=1: a veth with an XDP
; program receives in its own NAPI context, without turning GRO on.
; Built with `llc -march=bpf -filetype=obj` (Debian package llvm); no
; pointer types, so any LLVM version parses it.
target triple = "bpf"

@_license = global [4 x i8] c"GPL\00", section "license", align 1

define i32 @xdp_pass(i64 %ctx) section "xdp" {
  ret i32 2
}
