fn main() -> std::process::ExitCode {
    foreman_box::cli::main()
}
