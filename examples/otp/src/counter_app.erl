%% The counter application: a counter gen_server and a tiny HTTP endpoint
%% (/health, /state) on the port named by COUNTER_HTTP_PORT.
-module(counter_app).
-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    counter_sup:start_link().

stop(_State) ->
    ok.
