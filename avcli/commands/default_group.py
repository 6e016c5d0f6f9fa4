"""A verb with sub-commands whose plain form takes positional arguments.

`avcli ingest SRC... --out C` and `avcli ingest merge SHARD... --out C` cannot both be plain click commands: a
group reads its first argument as a sub-command's name. `DefaultCommandGroup` hands a first argument that names no
sub-command (a path, a recipe, an option) to a hidden default command, and its `--help` shows that command's
arguments and options followed by the sub-commands, so one page describes the whole verb.
"""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup


class _AtParentPath(TyperCommand.context_class):
    """The default command's context answers to the group's path: usage lines and "Try 'avcli ingest -h'" hints
    name the verb as the user typed it, not the hidden command."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


class DefaultCommand(TyperCommand):
    """The hidden command a `DefaultCommandGroup` runs when no sub-command is named."""

    context_class = _AtParentPath


class DefaultCommandGroup(TyperGroup):
    """Subclass and set `default_command` to the name of a hidden command registered with `cls=DefaultCommand`.
    No arguments at all show the help (`no_args_is_help`) or go to the default command, which says what is missing."""

    default_command: str = ""

    def parse_args(self, ctx, args):
        if not args and self.no_args_is_help:
            return super().parse_args(ctx, args)  # the verb's help
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter) -> None:
        default = self.commands[self.default_command]
        default_ctx = default.context_class(default, info_name=self.default_command, parent=ctx)
        default.format_usage(default_ctx, formatter)
        formatter.write_usage(ctx.command_path, self.subcommand_metavar, prefix="   or: ")
        self.format_help_text(ctx, formatter)
        default.format_options(default_ctx, formatter)
        self.format_commands(ctx, formatter)
        self.format_epilog(ctx, formatter)
