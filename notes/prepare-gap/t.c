int x = 1;
int f(int a) { return a * x; }
