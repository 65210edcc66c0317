fn main() -> std::process::ExitCode {
    nsgd::cli::main()
}
