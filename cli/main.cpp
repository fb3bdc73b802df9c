// vigil: the command-line client of vigil-agent.
#include <iostream>
#include <string>
#include <vector>

#include "cli/src/app.hpp"

int main(int argc, char** argv) {
  // First, before gRPC starts any thread: Ctrl-C must cancel calls, not kill us mid-write.
  vigil::cli::Interrupt interrupt;
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  return vigil::cli::run(args, std::cout, std::cerr, vigil::cli::processEnvironment(&interrupt));
}
