fn main() {
    println!("nsgd");
}
