// Test helper: its first action is to create the file named by argv[1]. A process killed at
// exec never creates it.
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  int fd = open(argv[1], O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return 1;
  close(fd);
  return 0;
}
