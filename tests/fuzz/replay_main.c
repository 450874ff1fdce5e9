/* Replays a fuzz corpus as a plain test: every file in the directories (or
 * files) named on the command line goes through LLVMFuzzerTestOneInput once.
 * Used when the targets are built without libFuzzer (gcc, normal ctest). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_FILE_MAX (1u << 20)

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  uint8_t *buf = malloc(REPLAY_FILE_MAX);
  size_t n = buf ? fread(buf, 1, REPLAY_FILE_MAX, f) : 0;
  int rc = (buf && !ferror(f)) ? 0 : -1;
  fclose(f);
  if (rc == 0) {
    /* Hand over an exact-size copy so ASan sees reads past the end. */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact) {
      memcpy(exact, buf, n);
      LLVMFuzzerTestOneInput(exact, n);
      free(exact);
    } else {
      rc = -1;
    }
  }
  free(buf);
  return rc;
}

int main(int argc, char **argv) {
  unsigned count = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      failed += replay_file(argv[i]) != 0;
      count++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      perror(argv[i]);
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      failed += replay_file(path) != 0;
      count++;
    }
    closedir(d);
  }
  printf("replayed %u inputs, %u unreadable\n", count, failed);
  return (failed || count == 0) ? 1 : 0;
}
