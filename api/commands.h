/* Internal header: included only by api/cli.c and the api/cmd_*.c subcommand files.
 * Each subcommand takes the arguments after its name and returns the process exit code
 * (0 success, 1 failure, 2 usage error). */
#ifndef API_COMMANDS_H
#define API_COMMANDS_H

#define EXIT_USAGE 2

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_media_info(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_ocr(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_jobs(int argc, char **argv); /* cmd_batch.c */
int cmd_bench(int argc, char **argv);

#endif // API_COMMANDS_H
