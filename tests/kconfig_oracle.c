/*
 * The kernel's own kconfig as an oracle for the differential test (tests/kconfig_diff.py).
 *
 * Compiled against a tree's scripts/kconfig: it includes conf.c itself (its `main` renamed),
 * so the "new" list is conf's own check_conf() in listnewconfig mode and the written file is
 * conf_write()'s after conf_read(), as `conf --listnewconfig` and `conf --olddefconfig` give
 * them. It adds what conf does not print: every symbol's visibility and computed value.
 *
 * The Kconfig files are parsed once (with their ~90 $(shell,...) toolchain probes, most of a
 * conf run); each job then runs in a child forked from that state, so it starts exactly as a
 * fresh conf does after conf_parse(), without parsing again.
 *
 * usage: kconfig-oracle Kconfig < jobs, one job a line:
 *   check START OUT      conf_read(START), then print the listnewconfig lines, "--", then
 *                        "NAME<TAB>VISIBLE<TAB>VALUE<TAB>SELECTED<TAB>IMPLIED" per named
 *                        typed symbol, and write OUT as olddefconfig does. VISIBLE is
 *                        n/m/y; SELECTED and IMPLIED are what its `select`s and `imply`s
 *                        force now (n/m/y, m raised to y for a bool as symbol.c does), or
 *                        "-" when nothing selects or implies it.
 *   allnoconfig START OUT    the same for `conf --allnoconfig` with KCONFIG_ALLCONFIG=START
 *                        (no listnewconfig lines)
 *   generate MODE OUT [ARG]   write OUT as `conf --MODE` does (allnoconfig, allyesconfig,
 *                        allmodconfig, alldefconfig, randconfig with KCONFIG_SEED=ARG,
 *                        defconfig from the file ARG).
 * Each job's output ends with a line "==" ("!=" if it failed).
 */
#define main kernel_conf_main
#include "conf.c"
#undef main

#include <sys/wait.h>

static const char *const tri_names[] = { "n", "m", "y" };

static const char *forced(const struct expr_value *reverse)
{
	return reverse->expr ? tri_names[reverse->tri] : "-";
}

static void print_symbols(void)
{
	struct symbol *sym;
	int i;

	for_all_symbols(i, sym) {
		if (!sym->name || sym->type == S_UNKNOWN || (sym->flags & SYMBOL_CONST))
			continue;
		sym_calc_value(sym);
		printf("%s\t%s\t%s\t%s\t%s\n", sym->name, tri_names[sym->visible],
		       sym_get_string_value(sym), forced(&sym->rev_dep),
		       forced(&sym->implied));
	}
}

/* conf's main() for --olddefconfig and --listnewconfig, from conf_read() on */
static int check(const char *start, const char *out)
{
	if (conf_read(start) || conf_errors())
		return 1;
	input_mode = listnewconfig;
	check_conf(&rootmenu);
	if (sym_dep_errors())
		return 1;
	printf("--\n");
	if (conf_write(out))
		return 1;
	print_symbols();
	return 0;
}

/* conf's main() for --allnoconfig with KCONFIG_ALLCONFIG=start */
static int allnoconfig_from(const char *start, const char *out)
{
	if (conf_read_simple(start, S_DEF_USER) || conf_errors())
		return 1;
	conf_set_all_new_symbols(def_no);
	if (sym_dep_errors())
		return 1;
	printf("--\n");
	if (conf_write(out))
		return 1;
	print_symbols();
	return 0;
}

/* conf's main() for the generating modes, without KCONFIG_ALLCONFIG */
static int generate(const char *mode, const char *out, const char *arg)
{
	if (!strcmp(mode, "randconfig")) {
		setenv("KCONFIG_SEED", arg, 1);
		set_randconfig_seed();
		while (conf_set_all_new_symbols(def_random))
			;
	} else if (!strcmp(mode, "defconfig")) {
		if (conf_read(arg))
			return 1;
		conf_set_all_new_symbols(def_default);
	} else if (!strcmp(mode, "allnoconfig")) {
		conf_set_all_new_symbols(def_no);
	} else if (!strcmp(mode, "allyesconfig")) {
		conf_set_all_new_symbols(def_yes);
	} else if (!strcmp(mode, "allmodconfig")) {
		conf_set_all_new_symbols(def_mod);
	} else if (!strcmp(mode, "alldefconfig")) {
		conf_set_all_new_symbols(def_default);
	} else {
		return 1;
	}
	return conf_errors() || sym_dep_errors() || conf_write(out);
}

static int run_job(char *line)
{
	char *kind = strtok(line, " \n"), *a = strtok(NULL, " \n");
	char *b = strtok(NULL, " \n"), *c = strtok(NULL, " \n");

	if (kind && a && b && !strcmp(kind, "check"))
		return check(a, b);
	if (kind && a && b && !strcmp(kind, "allnoconfig"))
		return allnoconfig_from(a, b);
	if (kind && a && b && !strcmp(kind, "generate"))
		return generate(a, b, c ? c : "");
	return 1;
}

int main(int argc, char **argv)
{
	char line[8192];
	int status;
	pid_t child;

	if (argc != 2) {
		fprintf(stderr, "usage: %s Kconfig < jobs\n", argv[0]);
		return 2;
	}
	conf_set_message_callback(NULL);
	conf_parse(argv[1]);
	while (fgets(line, sizeof(line), stdin)) {
		fflush(stdout);
		child = fork();
		if (child < 0)
			return 1;
		if (child == 0) {
			status = run_job(line);
			fflush(stdout);
			_exit(status);
		}
		if (waitpid(child, &status, 0) < 0)
			return 1;
		printf(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "==\n" : "!=\n");
	}
	return 0;
}
