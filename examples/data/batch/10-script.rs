fn main() {
    let words = ["alpha", "beta", "gamma"];
    for w in words {
        println!("{w}");
    }
}
