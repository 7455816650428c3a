/* commands.h - the subcommands of `ksa`; each takes the arguments after its name. */
#ifndef KSA_CLI_COMMANDS_H
#define KSA_CLI_COMMANDS_H

int ksa_cmd_demo(int argc, char **argv);
int ksa_cmd_eval(int argc, char **argv);
int ksa_cmd_gradcheck(int argc, char **argv);
int ksa_cmd_init(int argc, char **argv);
int ksa_cmd_inspect(int argc, char **argv);
int ksa_cmd_prepare(int argc, char **argv);

#endif
