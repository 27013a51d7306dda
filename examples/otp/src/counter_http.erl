%% A minimal HTTP/1.0 endpoint on 127.0.0.1, enough for health checks:
%%   GET /health  200 {"status":"ok","version":V}, or 503
%%                {"status":"error","version":V,"reason":R} when
%%                counter_server:health/0 reports a problem; V is the
%%                version of the code that answers (reconciler's health
%%                check asks again when another version answers)
%%   GET /state   200 and counter_server:info/0 as Erlang terms
%% The module does not change between versions; it calls counter_server
%% with fully qualified calls, so it always reaches the current code.
-module(counter_http).

-export([start_link/1, init/2, accept/1, serve/1]).

start_link(Port) ->
    proc_lib:start_link(?MODULE, init, [self(), Port]).

init(Parent, Port) ->
    Opts = [binary, {ip, {127, 0, 0, 1}}, {packet, http_bin}, {active, false},
            {reuseaddr, true}],
    case gen_tcp:listen(Port, Opts) of
        {ok, Listen} ->
            proc_lib:init_ack(Parent, {ok, self()}),
            ?MODULE:accept(Listen);
        {error, Reason} ->
            exit({listen, Port, Reason})
    end.

accept(Listen) ->
    {ok, Sock} = gen_tcp:accept(Listen),
    Pid = spawn(?MODULE, serve, [Sock]),
    ok = gen_tcp:controlling_process(Sock, Pid),
    ?MODULE:accept(Listen).

serve(Sock) ->
    {Status, Body} =
        case gen_tcp:recv(Sock, 0, 5000) of
            {ok, {http_request, 'GET', {abs_path, <<"/health">>}, _}} ->
                health();
            {ok, {http_request, 'GET', {abs_path, <<"/state">>}, _}} ->
                {200, io_lib:format("~p", [counter_server:info()])};
            _ ->
                {404, <<"not found">>}
        end,
    Bin = unicode:characters_to_binary(Body),
    gen_tcp:send(Sock, [<<"HTTP/1.0 ">>, integer_to_binary(Status), <<" ">>,
                        reason(Status), <<"\r\n">>,
                        <<"content-length: ">>, integer_to_binary(byte_size(Bin)),
                        <<"\r\n\r\n">>, Bin]),
    gen_tcp:close(Sock).

health() ->
    #{vsn := Vsn} = counter_server:info(),
    case counter_server:health() of
        ok ->
            {200, io_lib:format("{\"status\":\"ok\",\"version\":\"~s\"}", [Vsn])};
        {error, Reason} ->
            {503, io_lib:format("{\"status\":\"error\",\"version\":\"~s\",\"reason\":\"~ts\"}",
                                [Vsn, json_escape(text(Reason))])}
    end.

text(Reason) ->
    case io_lib:printable_unicode_list(Reason) of
        true -> Reason;
        false -> io_lib:format("~tp", [Reason])
    end.

json_escape(S) ->
    [case C of $" -> "\\\""; $\\ -> "\\\\"; _ -> C end || C <- lists:flatten(S)].

reason(200) -> <<"OK">>;
reason(404) -> <<"Not Found">>;
reason(503) -> <<"Service Unavailable">>.
